package evidence

import (
	"strings"

	"github.com/cloister-dev/cloister/evidence/internal/verr"
	"github.com/cloister-dev/cloister/evidence/snp"
	"github.com/cloister-dev/cloister/evidence/tsmreport"
)

// verifySNP verifies an SEV-SNP report through go-sev-guest (package snp).
// certTable is the extended report's certificate table (a configfs-tsm
// auxblob), which can supply the VCEK. AMD has no TCB status: the VCEK is
// certified for exactly the reported TCB, so tcb_status is NotEvaluated and
// the reported TCB is a claim.
func (v *Verifier) verifySNP(raw, certTable []byte, opts Options) (*Claims, error) {
	r, err := snp.Verify(raw, snp.Options{
		Time: opts.Time, VCEK: opts.VCEK, CertTable: certTable, Chain: opts.SNPChain, TrustRoots: opts.TrustRoots,
	})
	if err != nil {
		return nil, err
	}
	// Like dcapClaims: evidence that chains only to a root the caller named
	// can never claim the hardware kind.
	tee := TEESNP
	if !r.BuiltinRoot {
		tee = TEESimSNP
	}
	return &Claims{
		TEE: tee, ReportData: HexBytes(r.ReportData[:]), Debug: r.Debug, TCBStatus: StatusNotEvaluated,
		AdvisoryIDs: []string{}, Warnings: r.Warnings,
		SNPClaims: &SNPClaims{
			Measurement: HexBytes(r.Measurement[:]), HostData: HexBytes(r.HostData[:]), IDKeyDigest: HexBytes(r.IDKeyDigest[:]),
			AuthorKeyDigest: HexBytes(r.AuthorKeyDigest[:]), ReportID: HexBytes(r.ReportID[:]), Policy: r.Policy, VMPL: r.VMPL,
			ChipID: HexBytes(r.ChipID[:]), Product: r.Product, GuestSVN: r.GuestSVN, ReportedTCB: r.ReportedTCB,
			ReportedSPL: snpTCB(r.ReportedTCB), LaunchTCB: r.LaunchTCB, LaunchSPL: snpTCB(r.LaunchTCB),
			CurrentTCB: r.CurrentTCB, CommittedTCB: r.CommittedTCB,
			Signer: strings.ToLower(r.SignerKind),
		},
	}, nil
}

// snpTCB splits a TCB_VERSION into the claims' security patch levels.
func snpTCB(v uint64) SNPTCB {
	p := snp.SplitTCB(v)
	return SNPTCB{BootLoader: p.BootLoader, TEE: p.TEE, SNP: p.SNP, Microcode: p.Microcode}
}

// verifyTSM verifies a configfs-tsm report (Veraison's JSON or CBOR form)
// by its provider: tdx_guest carries a TDX quote, sev_guest an SNP report
// and its certificate table.
func (v *Verifier) verifyTSM(raw []byte, opts Options) (*Claims, error) {
	r, err := tsmreport.Parse(raw)
	if err != nil {
		// Detect sends here anything that starts like JSON or a CBOR map
		// (a DCAP quote whose version's low byte is 0xA0..0xBF too), so a
		// parse error needs its Reason like every other rejection.
		return nil, verr.Wrap("evidence", "configfs-tsm report", verr.Malformed, err, "not a configfs-tsm report (JSON or CBOR)")
	}
	switch r.Provider {
	case tsmreport.ProviderTDX:
		if Detect(r.OutBlob) != KindTDXQuote {
			return nil, verr.New("evidence", "configfs-tsm report", verr.Malformed, "provider %s but the outblob is not a TDX quote", r.Provider)
		}
		return v.verifyTDX(r.OutBlob, opts)
	case tsmreport.ProviderSNP:
		if Detect(r.OutBlob) != KindSNPReport {
			return nil, verr.New("evidence", "configfs-tsm report", verr.Malformed, "provider %s but the outblob is not an SEV-SNP report", r.Provider)
		}
		return v.verifySNP(r.OutBlob, r.AuxBlob, opts)
	}
	return nil, verr.New("evidence", "configfs-tsm report", verr.Unsupported, "provider %q: want %s or %s", r.Provider, tsmreport.ProviderTDX, tsmreport.ProviderSNP)
}

// DCAPQuote returns the Intel DCAP quote that raw is or carries: raw itself
// for an SGX or TDX quote, the outblob of a configfs-tsm report from the
// tdx_guest provider. Callers that supply collateral and trust roots for
// DCAP quotes (the attestation service, collateral fetching) use it so that
// a TDX quote inside a configfs-tsm report is treated like a bare one.
// Nothing is verified; ok is false for anything else.
func DCAPQuote(raw []byte) (quote []byte, ok bool) {
	switch Detect(raw) {
	case KindSGXQuote, KindTDXQuote:
		return raw, true
	case KindTSMReport:
		r, err := tsmreport.Parse(raw)
		if err != nil || r.Provider != tsmreport.ProviderTDX || Detect(r.OutBlob) != KindTDXQuote {
			return nil, false
		}
		return r.OutBlob, true
	}
	return nil, false
}
