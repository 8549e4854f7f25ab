package attest

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// admin wraps a policy or policy-signer management handler with caller
// authentication (Config.AdminToken / InsecureAdmin). MAA authenticates
// these callers (Azure AD); the attest endpoints, /certs and discovery stay
// anonymous, as MAA's do. Isolated mode's signature checks run after this,
// in the handlers: a signed policy still needs an authenticated caller.
func (s *Service) admin(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.InsecureAdmin {
		return h
	}
	// Digests of equal length compared in constant time: neither the
	// token's bytes nor its length leak through the comparison's timing.
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.AdminToken == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloister-attest"`)
			writeError(w, http.StatusUnauthorized, "Unauthorized",
				"policy management is disabled: the service was started without an admin token (attest serve --admin-token-file)")
			return
		}
		got, ok := bearer(r)
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloister-attest", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "Unauthorized",
				"policy management needs the admin token: Authorization: Bearer TOKEN")
			return
		}
		h(w, r)
	}
}

// bearer returns the credentials of an "Authorization: Bearer X" header;
// the scheme is case-insensitive (RFC 9110 §11.1).
func bearer(r *http.Request) (string, bool) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}
