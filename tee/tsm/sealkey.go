package tsm

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
	"github.com/google/go-sev-guest/client"
)

// purposeSNP is the seal.DeriveKey purpose of keys derived from an SEV-SNP
// MSG_KEY_REQ key, so they can never equal a key another backend derives
// from the same bytes.
const purposeSNP = "tsm sev-snp"

// snpEnclaveFields returns GUEST_FIELD_SELECT for seal.PolicyEnclave
// (SEV-SNP ABI, MSG_KEY_REQ); a function, not a variable, so nothing can
// change it. MEASUREMENT binds the key to the launch digest of the initial
// guest memory (firmware and whatever it measured in). GUEST_POLICY binds it to the launch policy, so
// the same image launched by the host with DEBUG allowed (policy bit 19:
// the host can read guest memory) or with a migration agent gets a
// different key. The firmware always mixes in the VMPL given in the
// request.
//
// Not selected, on purpose: FAMILY_ID, IMAGE_ID and GUEST_SVN come from the
// ID block, which the host supplies at launch and anyone can sign, so they
// would add nothing an attacker could not match, and leaving them out keeps
// keys stable when the ID block is re-signed; TCB_VERSION would need the
// TCB recorded next to each blob, which the seal format has no room for.
func snpEnclaveFields() client.GuestFieldSelect {
	return client.GuestFieldSelect{Measurement: true, GuestPolicy: true}
}

// snpKeys serialises MSG_KEY_REQ: go-sev-guest's devices are not safe for
// concurrent use, and the kernel throttles guest requests anyway.
type snpKeys struct {
	mu  sync.Mutex
	dev client.Device // nil: open /dev/sev-guest per request
}

// SealKey returns a 32-byte sealing key bound to req; it implements
// seal.KeySource.
//
// On TDX it fails with an error wrapping tee.ErrSealNotSupported: TDX has
// no hardware sealing key (a key service that releases keys to attested
// TDs is needed: enclave.Env.BrokerSealer gets one from the key broker).
//
// On SEV-SNP, under seal.PolicyEnclave, req must name this guest's
// measurement (tee.CheckKeyRequest; otherwise tee.ErrKeyRequestDenied).
// The key is seal.DeriveKey(K, "tsm sev-snp", req.Context()), where K is
// the 32-byte key the AMD secure processor derives for MSG_KEY_REQ with
// the VCEK as root key and GUEST_FIELD_SELECT = MEASUREMENT | GUEST_POLICY
// at the VMPL of the guest's reports (see snpEnclaveFields). The VCEK root
// is chosen because the alternative, the VMRK, exists only when a
// migration agent installed one. The VCEK is unique to the chip and to its
// TCB, so sealed data does not move to another host, and may become
// unreadable after a firmware TCB update; what must survive either needs
// a key service outside the chip (enclave.Env.BrokerSealer).
//
// Under seal.PolicySigner on SEV-SNP it fails with an error wrapping
// tee.ErrSealNotSupported. MSG_KEY_REQ cannot mix in ID_KEY_DIGEST or
// AUTHOR_KEY_DIGEST; the only signer-like fields it offers (FAMILY_ID,
// IMAGE_ID, GUEST_SVN) come from the ID block, which the host supplies at
// launch and anyone can sign with a key of their own. A host could launch
// its own image with our FAMILY_ID and GUEST_SVN and be given the same key,
// so such a key would protect nothing from the host.
func (p *Platform) SealKey(ctx context.Context, req seal.KeyRequest) ([]byte, error) {
	if p.kind == tee.KindTDX {
		return nil, fmt.Errorf("tsm: seal key: not supported on TDX (a TD has no hardware sealing key; get a key from the key broker with enclave.Env.BrokerSealer): %w", tee.ErrSealNotSupported)
	}
	if req.Policy == seal.PolicySigner {
		return nil, fmt.Errorf("tsm: seal key: signer policy is not supported on SEV-SNP: MSG_KEY_REQ cannot bind a key to the ID or author key, so FAMILY_ID/IMAGE_ID/GUEST_SVN would bind it to nothing the host cannot forge; use the enclave policy: %w", tee.ErrSealNotSupported)
	}
	if err := tee.CheckKeyRequest(p.id, req); err != nil {
		return nil, fmt.Errorf("tsm: seal key: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tsm: seal key: %w", err)
	}
	raw, err := p.snp.derive(&client.SnpDerivedKeyReq{
		UseVCEK:          true,
		GuestFieldSelect: snpEnclaveFields(),
		Vmpl:             p.vmpl,
	})
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	key, err := seal.DeriveKey(raw, purposeSNP, req.Context())
	if err != nil {
		return nil, fmt.Errorf("tsm: seal key: %w", err)
	}
	return key, nil
}

// derive sends one MSG_KEY_REQ and returns a copy of the 32-byte key; the
// response buffer is cleared.
func (s *snpKeys) derive(req *client.SnpDerivedKeyReq) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dev := s.dev
	if dev == nil {
		d, err := client.OpenDevice()
		if err != nil {
			return nil, fmt.Errorf("tsm: seal key: opening the SEV guest device: %w", err)
		}
		defer d.Close()
		dev = d
	}
	resp, err := client.GetDerivedKeyAcknowledgingItsLimitations(dev, req)
	if err != nil {
		return nil, fmt.Errorf("tsm: seal key: MSG_KEY_REQ: %w", err)
	}
	key := bytes.Clone(resp.Data[:])
	clear(resp.Data[:])
	return key, nil
}
