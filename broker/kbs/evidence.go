package kbs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/cloister-dev/cloister/evidence"
)

// primaryEvidence is the primary_evidence object. CoCo's SGX and TDX
// attesters send {"quote": base64} (TDX adds cc_eventlog and aa_eventlog,
// which this broker does not replay: the RTMRs are claims, and event logs
// are not). For SEV-SNP and configfs-tsm reports, whose CoCo form is the
// sev crate's serialization of the report's fields, the broker takes the
// bytes instead: "report" (a raw 1184-byte report) with "vcek" (DER, or
// PEM) and optionally "cert_chain" (PEM ASK and ARK), or "tsm" (a
// configfs-tsm report, Veraison's JSON or CBOR, which carries its own
// certificates). Exactly one of quote, report and tsm.
type primaryEvidence struct {
	Quote      *string `json:"quote"`
	Report     *string `json:"report"`
	TSM        *string `json:"tsm"`
	VCEK       *string `json:"vcek"`
	CertChain  *string `json:"cert_chain"`
	CCEventLog any     `json:"cc_eventlog"`
	AAEventLog any     `json:"aa_eventlog"`
}

// decodedEvidence is what evidence.Verify takes for one primary evidence.
type decodedEvidence struct {
	raw, vcek, chain []byte
}

// decodeEvidence reads primary_evidence for the session's tee: strict JSON
// without unknown members, base64 (standard, as CoCo's attesters write
// it), and a form that matches the tee: a quote for sgx and tdx, a report
// for snp, tsm for tdx and snp.
func decodeEvidence(tee string, pe jsontext.Value) (*decodedEvidence, error) {
	var p primaryEvidence
	if err := jsonv2.Unmarshal(pe, &p, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("kbs: primary_evidence: %w", err)
	}
	n := 0
	for _, f := range []*string{p.Quote, p.Report, p.TSM} {
		if f != nil {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("kbs: primary_evidence: want exactly one of quote (sgx, tdx), report (snp) and tsm (configfs-tsm, tdx or snp)")
	}
	if (p.VCEK != nil || p.CertChain != nil) && p.Report == nil {
		return nil, errors.New("kbs: primary_evidence: vcek and cert_chain go with a raw SNP report only")
	}
	var d decodedEvidence
	var err error
	switch {
	case p.Quote != nil:
		if tee != TeeSGX && tee != TeeTDX {
			return nil, fmt.Errorf("kbs: primary_evidence: a quote, but the session's tee is %s", tee)
		}
		if d.raw, err = stdBase64("quote", *p.Quote); err != nil {
			return nil, err
		}
		want := evidence.KindSGXQuote
		if tee == TeeTDX {
			want = evidence.KindTDXQuote
		}
		if evidence.Detect(d.raw) != want {
			return nil, fmt.Errorf("kbs: primary_evidence: quote is not a %s quote", tee)
		}
	case p.Report != nil:
		if tee != TeeSNP {
			return nil, fmt.Errorf("kbs: primary_evidence: an SNP report, but the session's tee is %s", tee)
		}
		if d.raw, err = stdBase64("report", *p.Report); err != nil {
			return nil, err
		}
		if evidence.Detect(d.raw) != evidence.KindSNPReport {
			return nil, errors.New("kbs: primary_evidence: report is not an SEV-SNP report")
		}
		if p.VCEK == nil {
			return nil, errors.New("kbs: primary_evidence: a raw SNP report needs its vcek")
		}
		if d.vcek, err = stdBase64("vcek", *p.VCEK); err != nil {
			return nil, err
		}
		if p.CertChain != nil {
			d.chain = []byte(*p.CertChain)
		}
	default:
		if tee != TeeTDX && tee != TeeSNP {
			return nil, fmt.Errorf("kbs: primary_evidence: a configfs-tsm report, but the session's tee is %s", tee)
		}
		if d.raw, err = stdBase64("tsm", *p.TSM); err != nil {
			return nil, err
		}
		if evidence.Detect(d.raw) != evidence.KindTSMReport {
			return nil, errors.New("kbs: primary_evidence: tsm is not a configfs-tsm report")
		}
	}
	return &d, nil
}

func stdBase64(name, s string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("kbs: primary_evidence: %s is not base64: %w", name, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("kbs: primary_evidence: %s is empty", name)
	}
	return b, nil
}

// teeMatches reports whether verified claims of kind claimsTEE answer a
// session for tee: the hardware kind, or its simulator, which evidence/
// reports only for evidence chaining to a root the operator trusted by
// name (Config.TrustRoots).
func teeMatches(tee, claimsTEE string) bool {
	switch tee {
	case TeeSGX:
		return claimsTEE == evidence.TEESGX || claimsTEE == evidence.TEESimSGX
	case TeeTDX:
		return claimsTEE == evidence.TEETDX || claimsTEE == evidence.TEESimTDX
	case TeeSNP:
		return claimsTEE == evidence.TEESNP || claimsTEE == evidence.TEESimSNP
	}
	return false
}

// errCollateral marks a collateral source failure: the broker's problem
// (503), not the client's.
var errCollateral = errors.New("kbs: collateral unavailable")

// verify checks d with evidence/, with collateral as the attestation
// service gets it: a DCAP quote (bare or in a configfs-tsm report) is
// verified against Intel's root and Config.TrustRoots with the collateral
// Config.Collateral returns (TCB evaluation is skipped, NotEvaluated, when
// there is no source); SNP against AMD's roots.
func (s *Server) verify(ctx context.Context, d *decodedEvidence) (*evidence.Claims, error) {
	opts := evidence.Options{Time: s.cfg.Now(), VCEK: d.vcek, SNPChain: d.chain}
	if quote, ok := evidence.DCAPQuote(d.raw); ok {
		opts.TrustRoots = s.dcapRoots
		if s.cfg.Collateral == nil {
			opts.SkipTCBEvaluation = true
		} else {
			b, err := s.cfg.Collateral(ctx, quote)
			if err != nil {
				if _, qerr := evidence.CollateralQuery(quote); qerr != nil {
					return nil, fmt.Errorf("kbs: evidence rejected: %w", qerr)
				}
				return nil, fmt.Errorf("%w: %w", errCollateral, err)
			}
			opts.Collateral = b
		}
	}
	c, err := s.verifier.Verify(ctx, d.raw, opts)
	if err != nil {
		if reason, ok := evidence.ReasonOf(err); ok {
			return nil, fmt.Errorf("kbs: evidence rejected (%v): %w", reason, err)
		}
		return nil, fmt.Errorf("kbs: evidence rejected: %w", err)
	}
	return c, nil
}
