// Package tdx parses Intel TDX quotes, versions 4 and 5 (v5 body types 2,
// TDX 1.0, and 3, TDX 1.5), on the DCAP layouts of evidence/dcap.
// Parsing is format only; evidence/dcap verifies. The TD report of a parsed
// quote is unverified until Verify returns.
package tdx

import (
	"github.com/cloister-dev/cloister/evidence/dcap"
	"github.com/cloister-dev/cloister/evidence/internal/le"
	"github.com/cloister-dev/cloister/evidence/internal/verr"
)

// Layout of TDX quotes.
const (
	// Body10Size is the size of a TDX 1.0 TD report body.
	Body10Size = 584
	// Body15Size is the size of a TDX 1.5 TD report body (adds TEE_TCB_SVN2
	// and MRSERVICETD).
	Body15Size = 648
	// BodyType10 and BodyType15 are the v5 body descriptor types for TDX.
	BodyType10 = 2
	BodyType15 = 3
	// descriptorSize is the v5 body descriptor: type (u16) and size (u32).
	descriptorSize = 6
)

// Body is a TD report body (TDX 1.0 or 1.5).
type Body struct {
	TEETCBSVN      [16]byte
	MRSEAM         [48]byte
	MRSignerSeam   [48]byte
	SEAMAttributes [8]byte
	TDAttributes   [8]byte
	XFAM           [8]byte
	MRTD           [48]byte
	MRConfigID     [48]byte
	MROwner        [48]byte
	MROwnerConfig  [48]byte
	RTMR           [4][48]byte
	ReportData     [64]byte
	// TDX 1.5 only (v5, body type 3).
	TEETCBSVN2  *[16]byte
	MRServiceTD *[48]byte
}

// Debug reports whether the TD's DEBUG attribute (bit 0) is set.
func (b *Body) Debug() bool { return b.TDAttributes[0]&0x01 != 0 }

// Quote is a parsed, unverified TDX quote.
type Quote struct {
	Header dcap.Header
	// BodyType is 2 for v4 quotes, else the v5 descriptor's type.
	BodyType uint16
	// Body is the TD report. UNVERIFIED until Verify succeeds.
	Body *Body
	Sig  *dcap.SignatureData
	// Trailing counts the bytes after the declared end of the signature
	// data. They are not signed and never read; see DESIGN.md.
	Trailing int
	signed   []byte
}

// SignedRegion returns the bytes the attestation key signs: the header and
// the body, with the v5 body descriptor. It returns nil if raw is too short
// or its version unknown. The verifier, the simulator's signer and the
// byte-flip tests all use this one function.
func SignedRegion(raw []byte) []byte {
	n, _, _ := signedSize(raw)
	if n == 0 {
		return nil
	}
	return raw[:n]
}

// signedSize returns the signed region's size and the body's type and size.
func signedSize(raw []byte) (int, uint16, int) {
	if len(raw) < dcap.HeaderSize+descriptorSize {
		return 0, 0, 0
	}
	r := le.New(raw)
	var ver uint16
	r.U16(&ver)
	switch ver {
	case 4:
		if len(raw) < dcap.HeaderSize+Body10Size {
			return 0, 0, 0
		}
		return dcap.HeaderSize + Body10Size, BodyType10, Body10Size
	case 5:
		r = le.New(raw[dcap.HeaderSize:])
		var typ uint16
		var size uint32
		r.U16(&typ)
		r.U32(&size)
		want := 0
		switch typ {
		case BodyType10:
			want = Body10Size
		case BodyType15:
			want = Body15Size
		}
		if want == 0 || int(size) != want || len(raw) < dcap.HeaderSize+descriptorSize+want {
			return 0, typ, int(size)
		}
		return dcap.HeaderSize + descriptorSize + want, typ, want
	}
	return 0, 0, 0
}

// Parse parses a TDX quote v4 or v5 strictly: declared sizes must match and
// every length is bounded. Bytes after the declared end of the signature data
// (fixed-size quote buffers leave them) are counted in Trailing, not read.
func Parse(raw []byte) (*Quote, error) {
	if len(raw) > dcap.MaxQuoteSize {
		return nil, verr.New("tdx", "quote", verr.Malformed, "%d bytes exceeds the cap of %d", len(raw), dcap.MaxQuoteSize)
	}
	h, err := dcap.ParseHeader(raw)
	if err != nil {
		return nil, err
	}
	if h.Version != 4 && h.Version != 5 {
		return nil, verr.New("tdx", "quote header", verr.Unsupported, "version %d; want 4 or 5", h.Version)
	}
	if err := dcap.CheckHeader(h, dcap.TEETypeTDX); err != nil {
		return nil, err
	}
	n, typ, size := signedSize(raw)
	if n == 0 {
		if h.Version == 5 && len(raw) >= dcap.HeaderSize+descriptorSize {
			return nil, verr.New("tdx", "body descriptor", verr.Malformed, "body type %d size %d (%d bytes in all); want type 2 (584 bytes) or 3 (648 bytes)", typ, size, len(raw))
		}
		return nil, verr.New("tdx", "quote", verr.Malformed, "%d bytes cannot hold the header and TD report", len(raw))
	}
	body, err := parseBody(raw[n-size:n], typ)
	if err != nil {
		return nil, err
	}
	r := le.New(raw[n:])
	var sigLen uint32
	var sigData []byte
	if !r.U32(&sigLen) || !r.Bytes(&sigData, int(sigLen)) {
		return nil, verr.New("tdx", "quote", verr.Malformed, "signature data declares %d bytes, %d remain", sigLen, max(len(raw)-n-4, 0))
	}
	sig, err := dcap.ParseSignatureData(sigData, true)
	if err != nil {
		return nil, err
	}
	return &Quote{Header: h, BodyType: typ, Body: body, Sig: sig, Trailing: r.Len(), signed: raw[:n]}, nil
}

func parseBody(b []byte, typ uint16) (*Body, error) {
	var body Body
	r := le.New(b)
	ok := r.Copy(body.TEETCBSVN[:]) && r.Copy(body.MRSEAM[:]) && r.Copy(body.MRSignerSeam[:]) &&
		r.Copy(body.SEAMAttributes[:]) && r.Copy(body.TDAttributes[:]) && r.Copy(body.XFAM[:]) &&
		r.Copy(body.MRTD[:]) && r.Copy(body.MRConfigID[:]) && r.Copy(body.MROwner[:]) && r.Copy(body.MROwnerConfig[:]) &&
		r.Copy(body.RTMR[0][:]) && r.Copy(body.RTMR[1][:]) && r.Copy(body.RTMR[2][:]) && r.Copy(body.RTMR[3][:]) &&
		r.Copy(body.ReportData[:])
	if ok && typ == BodyType15 {
		body.TEETCBSVN2 = new([16]byte)
		body.MRServiceTD = new([48]byte)
		ok = r.Copy(body.TEETCBSVN2[:]) && r.Copy(body.MRServiceTD[:])
	}
	if !ok || !r.Empty() {
		return nil, verr.New("tdx", "TD report body", verr.Malformed, "%d bytes do not match body type %d", len(b), typ)
	}
	return &body, nil
}

// DCAP returns the view of q that evidence/dcap verifies. The TCB is
// evaluated from TEE_TCB_SVN for both TDX 1.0 and 1.5 bodies; a 1.5 body's
// TEE_TCB_SVN2 feeds Intel's TD relaunch rule.
func (q *Quote) DCAP() *dcap.Quote {
	return &dcap.Quote{
		TEE: dcap.TDX, Header: q.Header, Signed: q.signed, Sig: q.Sig,
		TEETCBSVN: q.Body.TEETCBSVN, MRSignerSeam: q.Body.MRSignerSeam[:], SEAMAttributes: q.Body.SEAMAttributes,
		TEETCBSVN2: q.Body.TEETCBSVN2,
	}
}

// Verify parses and verifies raw with v.
func Verify(v *dcap.Verifier, raw []byte, opts dcap.Options) (*Quote, *dcap.Result, error) {
	q, err := Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	res, err := v.Verify(q.DCAP(), opts)
	if err != nil {
		return nil, nil, err
	}
	return q, res, nil
}

// Marshal encodes b in the TD report body layout: 584 bytes, or 648 when
// the TDX 1.5 fields are set.
func (b *Body) Marshal() []byte {
	out := make([]byte, 0, Body15Size)
	for _, f := range [][]byte{b.TEETCBSVN[:], b.MRSEAM[:], b.MRSignerSeam[:], b.SEAMAttributes[:], b.TDAttributes[:], b.XFAM[:],
		b.MRTD[:], b.MRConfigID[:], b.MROwner[:], b.MROwnerConfig[:], b.RTMR[0][:], b.RTMR[1][:], b.RTMR[2][:], b.RTMR[3][:], b.ReportData[:]} {
		out = append(out, f...)
	}
	if b.TEETCBSVN2 != nil && b.MRServiceTD != nil {
		out = append(out, b.TEETCBSVN2[:]...)
		out = append(out, b.MRServiceTD[:]...)
	}
	return out
}
