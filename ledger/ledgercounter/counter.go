// Package ledgercounter is a kv.Counter kept in a confidential ledger
// (package ledger, served by `cloister ledger serve`): one named ledger
// counter per store, moved by compare-and-increment, every change a ledger
// transaction. A store opened with it detects a whole-store rollback
// across enclave restarts, which kv.MemCounter (lost when the enclave
// stops) cannot.
//
// The ledger is reached over attested TLS: every handshake checks that
// the chain ends at the pinned service certificate AND that this
// certificate's RA-TLS evidence satisfies the caller's policy (ratls), so
// a host that answers with another ledger, or a ledger not running the
// expected code, is refused before a byte is sent.
package ledgercounter

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/ledger/aclapi"
	"github.com/cloister-dev/cloister/ratls"
)

// Options configure a Counter.
type Options struct {
	// URL is the ledger, https://HOST:PORT.
	URL string
	// Name is the ledger counter holding this store's Count (one per store).
	Name string
	// ServiceCert is the ledger's service certificate: the chain must end
	// at it, and its evidence must satisfy Verify.
	ServiceCert *x509.Certificate
	// Verify appraises the service certificate's evidence (policy naming
	// the ledger's measurement, collateral, trust roots, clock).
	Verify ratls.VerifyOptions
	// ClientCert is a ledger user with the Contributor or Administrator role.
	ClientCert tls.Certificate
	// DialContext dials the ledger; nil means net.Dialer (an enclave
	// passes env.DialContext).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Counter implements kv.Counter over the ledger's counter API.
type Counter struct {
	base   string
	name   string
	client *http.Client
}

// New checks o and returns the Counter. It does not contact the ledger.
func New(o Options) (*Counter, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("ledgercounter: URL %q: want https://HOST:PORT", o.URL)
	}
	if o.Name == "" || strings.ContainsAny(o.Name, "/?#%") {
		return nil, fmt.Errorf("ledgercounter: counter name %q: want a non-empty name without / ? # %%", o.Name)
	}
	if o.ServiceCert == nil || len(o.ClientCert.Certificate) == 0 {
		return nil, errors.New("ledgercounter: ServiceCert and ClientCert are required")
	}
	v, err := ratls.NewVerifier(o.Verify)
	if err != nil {
		return nil, fmt.Errorf("ledgercounter: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(o.ServiceCert)
	host := u.Hostname()
	svc := o.ServiceCert
	cfg := &tls.Config{
		Certificates: []tls.Certificate{o.ClientCert},
		MinVersion:   tls.VersionTLS12,
		// Verification is in VerifyConnection, which runs on every
		// handshake including resumptions: the chain to the pinned
		// service certificate, the name, and the service's evidence.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("ledgercounter: the ledger sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: pool, Intermediates: inter, DNSName: host, CurrentTime: o.Verify.Now(),
			}); err != nil {
				return fmt.Errorf("ledgercounter: the ledger's certificate does not chain to the service certificate: %w", err)
			}
			if _, err := v.Verify(context.Background(), svc); err != nil {
				return fmt.Errorf("ledgercounter: the service certificate's evidence: %w", err)
			}
			return nil
		},
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	if o.DialContext != nil {
		tr.DialContext = o.DialContext
	}
	return &Counter{
		base:   strings.TrimSuffix(o.URL, "/") + "/app/counters/" + url.PathEscape(o.Name) + "?api-version=" + aclapi.MinAPIVersion,
		name:   o.Name,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
	}, nil
}

// countSize is the encoding of a kv.Count in the counter's value.
const countSize = 8 + 32 + 32

func encodeCount(c kv.Count) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, countSize), c.Version)
	b = append(b, c.Digest[:]...)
	return append(b, c.Next[:]...)
}

func decodeCount(b []byte) (kv.Count, error) {
	if len(b) == 0 {
		return kv.Count{}, nil
	}
	if len(b) != countSize {
		return kv.Count{}, fmt.Errorf("ledgercounter: counter value of %d bytes, want %d", len(b), countSize)
	}
	var c kv.Count
	c.Version = binary.BigEndian.Uint64(b)
	copy(c.Digest[:], b[8:40])
	copy(c.Next[:], b[40:])
	return c, nil
}

// state is the ledger counter: its own version and the Count it holds.
type state struct {
	version uint64
	count   kv.Count
}

func (c *Counter) do(ctx context.Context, method string, body any) (state, int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base, rd)
	if err != nil {
		return state{}, 0, fmt.Errorf("ledgercounter: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return state{}, 0, fmt.Errorf("ledgercounter: %s counter %q: %w", method, c.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return state{}, resp.StatusCode, fmt.Errorf("ledgercounter: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e aclapi.ErrorBody
		json.Unmarshal(b, &e)
		return state{}, resp.StatusCode, fmt.Errorf("ledgercounter: %s counter %q: %d %s: %s", method, c.name, resp.StatusCode, e.Error.Code, e.Error.Message)
	}
	var out aclapi.CounterJSON
	if err := json.Unmarshal(b, &out); err != nil || out.Name != c.name {
		return state{}, resp.StatusCode, fmt.Errorf("ledgercounter: counter %q: unexpected answer", c.name)
	}
	v, err := base64.StdEncoding.DecodeString(out.Value)
	if err != nil {
		return state{}, resp.StatusCode, fmt.Errorf("ledgercounter: counter %q: value: %w", c.name, err)
	}
	cnt, err := decodeCount(v)
	if err != nil {
		return state{}, resp.StatusCode, err
	}
	return state{version: out.Version, count: cnt}, resp.StatusCode, nil
}

// Read implements kv.Counter.
func (c *Counter) Read(ctx context.Context) (kv.Count, error) {
	s, _, err := c.do(ctx, http.MethodGet, nil)
	return s.count, err
}

// maxRaces bounds the re-reads when the ledger counter moved between our
// read and our increment but still holds old (it went away and back).
const maxRaces = 8

// CompareAndSwap implements kv.Counter: read the ledger counter, and if
// it holds old, compare-and-increment it from the version read to new.
func (c *Counter) CompareAndSwap(ctx context.Context, old, new kv.Count) error {
	if new.Version < old.Version {
		return fmt.Errorf("ledgercounter: refusing to move back from %d to %d", old.Version, new.Version)
	}
	for i := 0; i < maxRaces; i++ {
		s, _, err := c.do(ctx, http.MethodGet, nil)
		if err != nil {
			return err
		}
		if s.count != old {
			return fmt.Errorf("%w: ledger counter %q holds version %d, expected %d", kv.ErrCounterConflict, c.name, s.count.Version, old.Version)
		}
		_, status, err := c.do(ctx, http.MethodPost, map[string]any{
			"expectedVersion": s.version, "value": base64.StdEncoding.EncodeToString(encodeCount(new)),
		})
		if status == http.StatusConflict {
			continue
		}
		return err
	}
	return fmt.Errorf("%w: ledger counter %q keeps moving", kv.ErrCounterConflict, c.name)
}
