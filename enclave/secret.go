package enclave

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/cloister-dev/cloister/broker/kbsclient"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

// Secrets from the key broker (`cloister broker serve`), by name, through
// the boundary: Env.Secret runs the Trustee KBS flow (package kbsclient)
// over TLS that ends inside the enclave and dials through the host's
// network service. Two things keep the host out:
//
//   - the TLS peer must present an RA-TLS certificate whose evidence
//     satisfies BrokerConfig.Policy (the broker's measurement or signer),
//     checked with package ratls on every handshake, so the host can
//     neither read the session nor stand in for the broker, whatever URL
//     it hands the enclave;
//   - the broker encrypts each secret to a P-256 key made inside the
//     enclave for the session and bound into the enclave's evidence, so
//     even the broker's transport sees ciphertext only.
//
// Where the trust comes from: the URL may come from the host (`cloister
// run --broker URL`, untrusted: it is only an address), but the Policy and
// TrustRoots must come from something measured - the app's own code (a
// constant compiled into the binary the MRENCLAVE covers), or the
// measured configuration of an encrypted bundle (see package loader). A
// policy the host could choose would let a hostile host send the app to a
// broker of its own and feed it secrets of its choosing; it could still
// never read the real broker's secrets.

// ErrNoBroker is returned by Secret before SetBroker, or when neither the
// app nor the host gave a broker URL.
var ErrNoBroker = errors.New("enclave: no key broker configured (call Env.SetBroker; the URL may come from 'cloister run --broker URL')")

// ErrBrokerURL is returned by SetBroker for a broker URL that is not
// https, wherever it came from.
var ErrBrokerURL = errors.New("enclave: broker URL")

// ErrSecretDenied is returned by Secret when the broker's resource policy
// does not release the secret to this enclave (kbsclient.ErrPolicyDenied
// matches too).
var ErrSecretDenied = kbsclient.ErrPolicyDenied

// BrokerConfig says which key broker Env.Secret asks and what it must
// prove. Policy and TrustRoots must be measured (compiled into the app or
// read from a measured bundle), never taken from the host.
type BrokerConfig struct {
	// URL is the broker, https://HOST:PORT. Empty means the URL the host
	// passed (`cloister run --broker URL`): safe, because the broker met
	// there is held to Policy.
	URL string
	// Policy is what the broker's RA-TLS evidence must satisfy; it must
	// name an identity (the broker's MRENCLAVE or MRSIGNER, or MRTD).
	Policy policy.Policy
	// TrustRoots replace Intel's and AMD's roots for the broker's
	// evidence; name the simulator root here to accept a sim broker.
	TrustRoots []*x509.Certificate
	// Collateral supplies DCAP collateral for the broker's quote. Required
	// unless SkipTCBEvaluation is set.
	Collateral ratls.CollateralSource
	// SkipTCBEvaluation verifies the broker's evidence without
	// collateral; its tcb_status is then NotEvaluated, which Policy must
	// list in AllowStatus.
	SkipTCBEvaluation bool
}

// secretState is the Env's broker client, made by SetBroker.
type secretState struct {
	mu     sync.Mutex
	client *kbsclient.Client
	tr     *http.Transport
}

// brokerClockTimeout bounds one host call for the clock the broker's
// certificate is checked against.
const brokerClockTimeout = 5 * time.Second

// SetBroker configures the key broker Secret asks. It checks cfg (a
// policy naming an identity, a usable URL) and makes no request; calling
// it again replaces the broker.
func (e *Env) SetBroker(cfg BrokerConfig) error {
	if cfg.URL == "" {
		cfg.URL = os.Getenv(wire.EnvBrokerURL)
	}
	if cfg.URL == "" {
		return ErrNoBroker
	}
	// Only https: over http there is no handshake, so Policy would never
	// be checked and whoever answers at the URL (the host) could plant
	// secrets of its choosing.
	if u, err := url.Parse(cfg.URL); err != nil || u.Scheme != "https" {
		return fmt.Errorf("%w: %q: want https://HOST:PORT (the broker is held to Policy by its RA-TLS handshake)", ErrBrokerURL, cfg.URL)
	}
	v, err := ratls.NewVerifier(ratls.VerifyOptions{
		Policy: cfg.Policy, TrustRoots: cfg.TrustRoots, Collateral: cfg.Collateral,
		SkipTCBEvaluation: cfg.SkipTCBEvaluation, Now: e.brokerClock,
	})
	if err != nil {
		return fmt.Errorf("enclave: broker: %w", err)
	}
	tr := &http.Transport{
		// Every byte goes through the host's network service; TLS ends here.
		DialContext:         e.DialContext,
		TLSClientConfig:     v.ClientConfig(nil),
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     time.Minute,
	}
	c, err := kbsclient.New(kbsclient.Config{URL: cfg.URL, HTTPClient: &http.Client{Transport: tr}, Platform: e.plat})
	if err != nil {
		tr.CloseIdleConnections()
		return fmt.Errorf("enclave: broker: %w", err)
	}
	e.secrets.mu.Lock()
	old := e.secrets.tr
	e.secrets.client, e.secrets.tr = c, tr
	e.secrets.mu.Unlock()
	if old != nil {
		old.CloseIdleConnections()
	}
	return nil
}

// brokerClock is the clock the broker's certificate validity is checked
// against: the host's, the only one an enclave has. A host that lies
// about the time can at most make an expired certificate of the genuine
// broker pass (its evidence must still verify and satisfy the policy), or
// make a valid one fail (denial of service, which the host has anyway).
func (e *Env) brokerClock() time.Time {
	ctx, cancel := context.WithTimeout(e.ctx, brokerClockTimeout)
	defer cancel()
	now, err := e.UntrustedNow(ctx)
	if err != nil {
		return time.Now()
	}
	return now
}

// Secret returns the secret the key broker holds at path
// ("repository/type/tag"), released only if the broker's resource policy
// accepts this enclave's evidence. The first call attests (KBS auth and
// attest); later calls reuse the session. Errors: ErrNoBroker before
// SetBroker; ErrSecretDenied when the policy refuses;
// kbsclient.ErrEmptySecret for a zero-length secret (never returned as
// one); a kbsclient.ErrNotFound when there is no such secret; a ratls
// error when the peer is not the broker the policy names. The secret is
// never logged; the caller should not log it either.
func (e *Env) Secret(ctx context.Context, path string) ([]byte, error) {
	e.secrets.mu.Lock()
	c := e.secrets.client
	e.secrets.mu.Unlock()
	if c == nil {
		return nil, ErrNoBroker
	}
	b, err := c.Resource(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("enclave: secret %s: %w", path, err)
	}
	return b, nil
}

// BrokerSealer returns a seal.Sealer whose keys derive from the broker
// secret at path (at least 32 bytes of random key material; see `cloister
// broker`'s admin API): the sealing key of TDX apps, which have no
// hardware one (tee/tsm's SealKey refuses). Like a hardware key it is
// bound to the running identity: a request for another measurement,
// signer or product, or a higher SVN, is refused, and keys for different
// identities are independent (HKDF over the key request). Use it with
// kv.OpenEnv(ctx, env, name, kv.Options{Sealer: s, Create: true}).
//
// The broker's policy for the secret decides who gets it: pin the app's
// measurement (PolicyEnclave use) or its signer and product (PolicySigner,
// so upgrades keep their data).
//
// Unlike EGETKEY, the rule is kept by this code, not by the key material:
// whoever holds the root can derive every key from it. So the broker's
// policy is the real boundary. Under a signer policy an older SVN that the
// broker still releases the root to can derive a newer SVN's keys (which
// EGETKEY forbids): require a minimum SVN in the broker policy and, when
// raising it because an old version is compromised, move the data to a
// new root (a new resource) - the old version may already hold this one.
func (e *Env) BrokerSealer(ctx context.Context, path string) (seal.Sealer, error) {
	root, err := e.Secret(ctx, path)
	if err != nil {
		return seal.Sealer{}, err
	}
	if len(root) < MinBrokerKeySize {
		return seal.Sealer{}, fmt.Errorf("enclave: broker sealer: secret %s is %d bytes, want at least %d bytes of key material", path, len(root), MinBrokerKeySize)
	}
	id := e.plat.Identity()
	return seal.Sealer{Keys: brokerKeys{root: root, id: id}, Identity: tee.SealIdentity(id)}, nil
}

// MinBrokerKeySize is the least key material BrokerSealer accepts from
// the broker: 32 bytes, an AES-256 key's worth.
const MinBrokerKeySize = 32

// brokerKeys is a seal.KeySource over a root key from the broker.
type brokerKeys struct {
	root []byte
	id   tee.Identity
}

// brokerSealPurpose separates broker-rooted sealing keys from every other
// use of seal.DeriveKey.
const brokerSealPurpose = "broker-rooted seal key"

// SealKey implements seal.KeySource with the EGETKEY rule of
// tee.CheckKeyRequest.
func (k brokerKeys) SealKey(_ context.Context, req seal.KeyRequest) ([]byte, error) {
	if err := tee.CheckKeyRequest(k.id, req); err != nil {
		return nil, fmt.Errorf("enclave: broker sealer: %w", err)
	}
	// The policy is in the purpose: KeyRequest.Context does not carry it.
	return seal.DeriveKey(k.root, brokerSealPurpose+" "+req.Policy.String(), req.Context())
}
