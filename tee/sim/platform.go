package sim

import (
	"context"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"io"

	"github.com/cloister-dev/cloister/evidence/tdx"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

// App is the identity of the simulated enclave: what `cloister measure`
// computes for the app binary and its signature.
type App struct {
	MRENCLAVE [32]byte
	MRSIGNER  [32]byte
	ProductID uint16
	SVN       uint16
	Debug     bool
}

// Platform is a simulated SGX enclave or TDX trust domain. It implements
// tee.Platform.
type Platform struct {
	pki  *PKI
	kind tee.Kind
	app  App
	rand io.Reader
}

// NewPlatform returns the simulated platform of kind (tee.KindSimSGX or
// tee.KindSimTDX) running app, with keys from pki. rnd defaults to
// crypto/rand.
func NewPlatform(pki *PKI, kind tee.Kind, app App, rnd io.Reader) (*Platform, error) {
	if kind != tee.KindSimSGX && kind != tee.KindSimTDX {
		return nil, fmt.Errorf("sim: kind %q: want %s or %s", kind, tee.KindSimSGX, tee.KindSimTDX)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Platform{pki: pki, kind: kind, app: app, rand: rnd}, nil
}

// MRTD is the sim-tdx measurement of an app: SHA-384 over a label and its
// MRENCLAVE, so one app has one identity on both sims.
func MRTD(mrenclave [32]byte) [48]byte {
	return sha512.Sum384(append([]byte("CLOISTER-SIM-MRTD-v1\x00"), mrenclave[:]...))
}

// Kind implements tee.Platform.
func (p *Platform) Kind() tee.Kind { return p.kind }

// Identity implements tee.Platform.
func (p *Platform) Identity() tee.Identity {
	id := tee.Identity{Measurement: p.app.MRENCLAVE[:], Signer: p.app.MRSIGNER[:], ProductID: p.app.ProductID, SVN: p.app.SVN, Debug: p.app.Debug}
	if p.kind == tee.KindSimTDX {
		m := MRTD(p.app.MRENCLAVE)
		id.Measurement = m[:]
	}
	return id
}

// Evidence implements tee.Platform: a raw SGX v3 or TDX v4 quote.
func (p *Platform) Evidence(ctx context.Context, reportData [64]byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.kind == tee.KindSimSGX {
		return p.pki.QuoteSGX(p.rand, SGXReport{MRENCLAVE: p.app.MRENCLAVE, MRSIGNER: p.app.MRSIGNER,
			ISVProdID: p.app.ProductID, ISVSVN: p.app.SVN, Debug: p.app.Debug, ReportData: reportData})
	}
	b := tdx.Body{MRTD: MRTD(p.app.MRENCLAVE), ReportData: reportData}
	b.XFAM[0], b.XFAM[1] = 0xE7, 0x02
	if p.app.Debug {
		b.TDAttributes[0] = 0x01
	}
	return p.pki.QuoteTDX(p.rand, b)
}

// SealKey implements tee.Platform: keys derived from the sim directory's
// sealing secret, for the running identity only.
func (p *Platform) SealKey(ctx context.Context, req seal.KeyRequest) ([]byte, error) {
	if err := tee.CheckKeyRequest(p.Identity(), req); err != nil {
		return nil, err
	}
	return seal.DeriveKey(p.pki.sealSecret, "sim", req.Context())
}
