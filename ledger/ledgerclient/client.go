// Package ledgerclient talks to a Cloister (or ACL-compatible) ledger over
// attested TLS, for Cloister's own services: kv's counter
// (ledger/ledgercounter) and the attestation service's transparency
// records. On every handshake (VerifyConnection) the server's chain must
// end at the pinned service certificate, and that certificate's RA-TLS
// evidence must satisfy the caller's policy, so a host that answers with
// another ledger, or with one not running the expected code, is refused
// before a byte is sent. Users authenticate with a client certificate.
package ledgerclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ledger/aclapi"
	"github.com/cloister-dev/cloister/ratls"
)

// Options configure a Client.
type Options struct {
	// URL is the ledger, https://HOST:PORT.
	URL string
	// ServiceCert is the ledger's service certificate: the chain must end
	// at it, and its evidence must satisfy Verify.
	ServiceCert *x509.Certificate
	// Verify appraises the service certificate's evidence (a policy naming
	// the ledger's measurement, collateral, trust roots, clock).
	Verify ratls.VerifyOptions
	// ClientCert is the ledger user.
	ClientCert tls.Certificate
	// DialContext dials the ledger; nil means net.Dialer (an enclave
	// passes env.DialContext).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client is a ledger client. Safe for concurrent use.
type Client struct {
	base string
	http *http.Client
}

// New checks o and returns the Client. It does not contact the ledger.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("ledgerclient: URL %q: want https://HOST:PORT", o.URL)
	}
	if o.ServiceCert == nil || len(o.ClientCert.Certificate) == 0 {
		return nil, errors.New("ledgerclient: ServiceCert and ClientCert are required")
	}
	v, err := ratls.NewVerifier(o.Verify)
	if err != nil {
		return nil, fmt.Errorf("ledgerclient: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(o.ServiceCert)
	host, svc, now := u.Hostname(), o.ServiceCert, o.Verify.Now
	cfg := &tls.Config{
		Certificates: []tls.Certificate{o.ClientCert},
		MinVersion:   tls.VersionTLS12,
		// Verification is in VerifyConnection, which runs on every
		// handshake including resumptions: the chain to the pinned
		// service certificate, the name, and the service's evidence.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("ledgerclient: the ledger sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: pool, Intermediates: inter, DNSName: host, CurrentTime: now(),
			}); err != nil {
				return fmt.Errorf("ledgerclient: the ledger's certificate does not chain to the service certificate: %w", err)
			}
			if _, err := v.Verify(context.Background(), svc); err != nil {
				return fmt.Errorf("ledgerclient: the service certificate's evidence: %w", err)
			}
			return nil
		},
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}
	if o.DialContext != nil {
		tr.DialContext = o.DialContext
	}
	return &Client{base: strings.TrimSuffix(o.URL, "/"), http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// StatusError is a non-2xx answer, with ACL's error code and message.
type StatusError struct {
	Status  int
	Code    string
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("ledgerclient: %d %s: %s", e.Status, e.Code, e.Message)
}

// maxAnswer caps an answer's size (a page of entries at their largest).
const maxAnswer = 16 << 20

// Do sends one request to path (which may carry a query; api-version is
// added) with body as JSON (nil: none), decodes a 2xx answer into out (nil:
// ignored) and returns the headers. Other statuses are a *StatusError.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("ledgerclient: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path+sep+"api-version="+aclapi.MinAPIVersion, rd)
	if err != nil {
		return nil, fmt.Errorf("ledgerclient: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ledgerclient: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("ledgerclient: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e aclapi.ErrorBody
		json.Unmarshal(b, &e)
		return resp.Header, &StatusError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.Header, fmt.Errorf("ledgerclient: %s %s: answer: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// Append adds an entry to a collection and returns its transaction id.
func (c *Client) Append(ctx context.Context, collection, contents string) (ledger.TxID, error) {
	h, err := c.Do(ctx, http.MethodPost, "/app/transactions?collectionId="+url.QueryEscape(collection), map[string]string{"contents": contents}, nil)
	if err != nil {
		return ledger.TxID{}, err
	}
	tx, err := ledger.ParseTxID(h.Get("x-ms-ccf-transaction-id"))
	if err != nil {
		return ledger.TxID{}, fmt.Errorf("ledgerclient: append: %w", err)
	}
	return tx, nil
}

// Entry is a listed entry.
type Entry struct {
	Contents      string `json:"contents"`
	CollectionID  string `json:"collectionId"`
	TransactionID string `json:"transactionId"`
}

// maxPages bounds one List (a server that keeps sending nextLink).
const maxPages = 100000

// List returns a collection's entries with ids in [from, to] (empty: no
// bound), following nextLink.
func (c *Client) List(ctx context.Context, collection, from, to string) ([]Entry, error) {
	q := url.Values{"collectionId": {collection}}
	if from != "" {
		q.Set("fromTransactionId", from)
	}
	if to != "" {
		q.Set("toTransactionId", to)
	}
	path := "/app/transactions?" + q.Encode()
	var out []Entry
	for i := 0; i < maxPages; i++ {
		var page struct {
			State    string  `json:"state"`
			Entries  []Entry `json:"entries"`
			NextLink string  `json:"nextLink"`
		}
		if _, err := c.Do(ctx, http.MethodGet, path, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Entries...)
		if page.NextLink == "" {
			return out, nil
		}
		if !strings.HasPrefix(page.NextLink, "/app/transactions?") {
			return nil, fmt.Errorf("ledgerclient: nextLink %q leaves the list", page.NextLink)
		}
		path = page.NextLink
	}
	return nil, fmt.Errorf("ledgerclient: more than %d pages", maxPages)
}
