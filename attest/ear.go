package attest

import (
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/evidence"
)

// EAR (IETF RATS "EAT Attestation Results", draft-ietf-rats-ear) output,
// chosen per request with ?format=ear or an Accept header naming one of
// EARMediaTypes. The token is signed with the same key, header (jku, kid)
// and /certs as the MAA-shaped token; contract §6 records the mapping.
const (
	// EARProfile is the eat_profile of the tokens (the JWT profile Veraison
	// and the draft's examples use).
	EARProfile = "tag:github.com,2023:veraison/ear"
	// EARDeveloper is ear.verifier-id.developer.
	EARDeveloper = "https://github.com/cloister-dev/cloister"
)

// EARMediaTypes are the Accept values that select an EAR token.
var EARMediaTypes = []string{"application/eat-ear+jwt", "application/ear+jwt", "application/eat+jwt"}

// AR4SI trustworthiness claim values (draft-ietf-rats-ar4si).
const (
	tierNone            = 0
	tierAffirming       = 2
	tierWarning         = 32
	tierContraindicated = 96
)

// wantsEAR reports whether the request asks for an EAR token.
func wantsEAR(r *http.Request) bool {
	if strings.EqualFold(r.URL.Query().Get("format"), "ear") {
		return true
	}
	for _, a := range r.Header.Values("Accept") {
		for _, part := range strings.Split(a, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if slices.Contains(EARMediaTypes, strings.ToLower(strings.TrimSpace(mt))) {
				return true
			}
		}
	}
	return false
}

var earBuild = sync.OnceValue(func() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return "cloister-attest " + v
})

// earStatus maps the DCAP TCB status (and the policy verdict) to an
// ear.status and the hardware trustworthiness claim: only an UpToDate,
// permitted platform is affirming; a platform that needs patching or
// configuration, or whose TCB was not evaluated, is a warning; a revoked
// one, or a policy denial, is contraindicated.
func earStatus(tcb string, permitted bool) (status string, hardware int) {
	switch {
	case !permitted || tcb == evidence.StatusRevoked:
		if tcb == evidence.StatusRevoked {
			return "contraindicated", tierContraindicated
		}
		return "contraindicated", hardwareTier(tcb)
	case tcb == evidence.StatusUpToDate:
		return "affirming", tierAffirming
	default:
		return "warning", hardwareTier(tcb)
	}
}

func hardwareTier(tcb string) int {
	switch tcb {
	case evidence.StatusUpToDate:
		return tierAffirming
	case evidence.StatusNotEvaluated, "":
		return tierNone
	case evidence.StatusRevoked:
		return tierContraindicated
	default:
		return tierWarning
	}
}

// earClaims builds the EAR claims set for one appraisal of evidence from
// tee. maaClaims (the claims the MAA-shaped token would carry, or nil)
// go into the submodule as ear.veraison.annotated-evidence; their JWT
// registered claims (iss, iat, nbf, exp, jti) are lifted to the top level.
func (s *Service) earClaims(tee, tcb string, permitted bool, reason string, maaClaims jwt.MapClaims, nonce *string) jwt.MapClaims {
	status, hw := earStatus(tcb, permitted)
	tv := map[string]any{"instance-identity": tierAffirming}
	if hw != tierNone {
		tv["hardware"] = hw
	}
	annotated := map[string]any{}
	for k, v := range maaClaims {
		switch k {
		case "iss", "iat", "nbf", "exp", "jti":
		default:
			annotated[k] = v
		}
	}
	if reason != "" {
		annotated["x-ms-policy-denial"] = reason
	}
	submod := map[string]any{
		"ear.status":                      status,
		"ear.trustworthiness-vector":      tv,
		"ear.veraison.annotated-evidence": annotated,
	}
	if h, ok := maaClaims["x-ms-policy-hash"].(string); ok {
		submod["ear.appraisal-policy-id"] = "x-ms-policy-hash:" + h
	}
	now := s.cfg.Now()
	c := jwt.MapClaims{
		"eat_profile":     EARProfile,
		"iss":             s.cfg.Issuer,
		"iat":             now.Unix(),
		"nbf":             now.Unix(),
		"exp":             now.Add(TokenLifetime).Unix(),
		"ear.verifier-id": map[string]any{"developer": EARDeveloper, "build": earBuild()},
		"submods":         map[string]any{tee: submod},
	}
	if j, ok := maaClaims["jti"]; ok {
		c["jti"] = j
	}
	// eat_nonce is 8..64 bytes in EAT; other nonces stay in the
	// annotated evidence ("nonce") only.
	if nonce != nil && len(*nonce) >= 8 && len(*nonce) <= 88 {
		c["eat_nonce"] = *nonce
	}
	return c
}
