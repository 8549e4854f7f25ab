package enclave

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

// simPlatform is tee.Platform for the simulator kinds, inside the enclave
// process: the host holds the sim PKI and the measured identity, so
// evidence and sealing keys come through host calls. Only the simulator and
// a confidential VM (where the host process is inside the TEE and holds
// configfs-tsm) may work this way; see the package doc.
type simPlatform struct {
	env  *Env
	kind tee.Kind
	id   tee.Identity
}

// newSimPlatform asks the host for the identity it measured and checks it
// names the kind the launch named.
func newSimPlatform(ctx context.Context, e *Env, kind tee.Kind) (*simPlatform, error) {
	resp := make([]byte, 1024)
	n, err := e.call(ctx, wire.CallSimIdentity, nil, resp)
	if err != nil {
		return nil, fmt.Errorf("enclave: sim identity: %w", err)
	}
	got, id, err := wire.ParseIdentity(resp[:n])
	if err != nil {
		return nil, fmt.Errorf("enclave: sim identity: %w", err)
	}
	if got != kind {
		return nil, fmt.Errorf("enclave: sim identity: host measured for %q, launched as %q", got, kind)
	}
	return &simPlatform{env: e, kind: kind, id: id}, nil
}

// Kind implements tee.Platform.
func (p *simPlatform) Kind() tee.Kind { return p.kind }

// Identity implements tee.Platform: the identity the host measured, so
// that sealing and quotes agree with `cloister measure`.
func (p *simPlatform) Identity() tee.Identity {
	id := p.id
	id.Measurement = append([]byte(nil), id.Measurement...)
	id.Signer = append([]byte(nil), id.Signer...)
	if len(id.Signer) == 0 {
		id.Signer = nil
	}
	return id
}

// Evidence implements tee.Platform: the host's sim quoting service signs
// a quote over reportData.
func (p *simPlatform) Evidence(ctx context.Context, reportData [64]byte) ([]byte, error) {
	resp := make([]byte, boundary.MaxEvidence)
	n, err := p.env.client.Call(ctx, boundary.CallEvidenceQuote, reportData[:], resp)
	if err != nil {
		return nil, fmt.Errorf("enclave: evidence: %w", err)
	}
	return resp[:n:n], nil
}

// SealKey implements tee.Platform. The EGETKEY rule is checked here first,
// so the enclave never asks for a key it may not have, then again by the
// host's sim platform.
func (p *simPlatform) SealKey(ctx context.Context, req seal.KeyRequest) ([]byte, error) {
	if err := tee.CheckKeyRequest(p.id, req); err != nil {
		return nil, err
	}
	b, err := wire.SealKeyRequest(req)
	if err != nil {
		return nil, fmt.Errorf("enclave: seal key: %w", err)
	}
	resp := make([]byte, seal.MaxKeyMaterialSize)
	n, err := p.env.client.Call(ctx, wire.CallSimSealKey, b, resp)
	if err != nil {
		return nil, fmt.Errorf("enclave: seal key: %w", err)
	}
	if n < seal.MinKeyMaterialSize {
		return nil, errors.New("enclave: seal key: host returned too little key material")
	}
	return resp[:n:n], nil
}
