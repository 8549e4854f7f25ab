package pcs

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Default endpoints of the Intel PCS.
const (
	// DefaultBaseURL is the Intel PCS API root.
	DefaultBaseURL = "https://api.trustedservices.intel.com"
	// DefaultRootCACRLURL is where Intel publishes the DER CRL of the Intel
	// SGX Root CA.
	DefaultRootCACRLURL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
)

// Getter performs one HTTP GET. It is the client's only way to the network,
// so tests (and callers with their own transport or a PCCS) substitute it.
// Get returns an error unless the status is 200 OK; the body it returns is
// complete and bounded in size.
type Getter interface {
	Get(ctx context.Context, url string) (http.Header, []byte, error)
}

// HTTPGetter is the Getter used by default: a GET with net/http. Non-200
// responses are errors naming the URL and status, and bodies larger than
// 512 KiB are refused.
type HTTPGetter struct {
	// Client sends the requests; nil means a client with the default
	// transport and a 60 s timeout.
	Client *http.Client
}

// Get fetches url and returns the response header and body.
func (g HTTPGetter) Get(ctx context.Context, url string) (http.Header, []byte, error) {
	client := g.Client
	if client == nil {
		client = &http.Client{Timeout: defaultHTTPTimeout}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("pcs: GET %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("pcs: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// PCS explains 4xx answers (unknown FMSPC, bad parameter) in
		// these headers; they are what a person needs to act.
		msg := ""
		if code := resp.Header.Get("Error-Code"); code != "" {
			msg += " Error-Code " + code
		}
		if m := resp.Header.Get("Error-Message"); m != "" {
			msg += " Error-Message " + m
		}
		return nil, nil, fmt.Errorf("pcs: GET %s: status %s%s", url, resp.Status, msg)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("pcs: GET %s: reading body: %w", url, err)
	}
	if len(body) > maxResponseSize {
		return nil, nil, fmt.Errorf("pcs: GET %s: body larger than %d bytes", url, maxResponseSize)
	}
	return resp.Header, body, nil
}

// Config configures a Client. The zero Config talks to the real Intel PCS
// without a cache.
type Config struct {
	// BaseURL is the PCS API root (scheme and host, optionally a path
	// prefix); "" means DefaultBaseURL. A PCCS that mirrors the v4 paths
	// may be named here.
	BaseURL string
	// RootCACRLURL is the URL of the DER Intel SGX Root CA CRL; "" means
	// DefaultRootCACRLURL.
	RootCACRLURL string
	// Getter performs the requests; nil means HTTPGetter{}.
	Getter Getter
	// Cache, if set, keeps responses on disk until their nextUpdate.
	Cache *Cache
	// Now is the clock that decides cache freshness. Required when Cache is
	// set (there is no hidden time.Now); unused otherwise.
	Now func() time.Time
}

// validate checks c once and fills in the defaults, so Fetch never
// re-checks them.
func (c *Config) validate() error {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.RootCACRLURL == "" {
		c.RootCACRLURL = DefaultRootCACRLURL
	}
	if c.Getter == nil {
		c.Getter = HTTPGetter{}
	}
	if c.Cache != nil && c.Now == nil {
		return fmt.Errorf("pcs: config: Now is required when Cache is set")
	}
	if err := checkURL("BaseURL", c.BaseURL, false); err != nil {
		return err
	}
	if err := checkURL("RootCACRLURL", c.RootCACRLURL, true); err != nil {
		return err
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	return nil
}

// checkURL accepts absolute http(s) URLs. Plain http is allowed (a local
// PCCS, tests) because integrity comes from Intel's signatures, not from
// the transport. A base URL must not carry a query or fragment, since paths
// are appended to it.
func checkURL(name, s string, query bool) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("pcs: config: %s: %w", name, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("pcs: config: %s %q: want an absolute http or https URL", name, s)
	}
	if !query && (u.RawQuery != "" || u.Fragment != "") {
		return fmt.Errorf("pcs: config: %s %q: must not have a query or fragment", name, s)
	}
	return nil
}

// Client fetches collateral from the Intel PCS v4 API. It is safe for
// concurrent use. It checks the format of what it fetches (so a broken
// answer fails here, with the URL in the error) but trusts nothing: the
// returned Bundle is verified by evidence/dcap like any other.
type Client struct {
	cfg Config
}

// NewClient validates cfg, fills in its defaults and returns a Client.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Client{cfg: cfg}, nil
}

// validate checks q before any request is made.
func (q Query) validate() error {
	if q.TEE != SGX && q.TEE != TDX {
		return fmt.Errorf("pcs: query: TEE %q, want %q or %q", q.TEE, SGX, TDX)
	}
	if len(q.FMSPC) != fmspcSize {
		return fmt.Errorf("pcs: query: FMSPC is %d bytes, want %d", len(q.FMSPC), fmspcSize)
	}
	if q.CA != "processor" && q.CA != "platform" {
		return fmt.Errorf("pcs: query: CA %q, want \"processor\" or \"platform\"", q.CA)
	}
	return nil
}

// URLs of the four collateral items of q, in the order Fetch gets them.
func (c *Client) tcbInfoURL(q Query) string {
	return c.cfg.BaseURL + "/" + string(q.TEE) + "/certification/v4/tcb?fmspc=" + hex.EncodeToString(q.FMSPC)
}

func (c *Client) qeIdentityURL(q Query) string {
	return c.cfg.BaseURL + "/" + string(q.TEE) + "/certification/v4/qe/identity"
}

// pckCRLURL is always on the sgx path: TDX platforms have SGX PCK
// certificates.
func (c *Client) pckCRLURL(q Query) string {
	return c.cfg.BaseURL + "/sgx/certification/v4/pckcrl?ca=" + q.CA + "&encoding=der"
}

// Fetch gets the TCB info, QE identity, PCK CRL and root CA CRL for q
// (from the cache where fresh) and returns them as a Bundle, CRLs in
// lowercase hex. Every item gets DecodeUnverified's format checks as it arrives, so
// the bundle passes DecodeUnverified; it is not verified.
func (c *Client) Fetch(ctx context.Context, q Query) (*Bundle, error) {
	if err := q.validate(); err != nil {
		return nil, err
	}
	var b Bundle
	err := c.get(ctx, c.tcbInfoURL(q), func(h http.Header, body []byte) (time.Time, error) {
		const what = "tcbInfo response"
		signed, sig, err := cutSigned(what, body, tcbInfoKey)
		if err != nil {
			return time.Time{}, err
		}
		chain, err := headerChain(what, h, tcbInfoChainHeaders)
		if err != nil {
			return time.Time{}, err
		}
		if err := checkSigned("tcb_info", signed, sig, chain); err != nil {
			return time.Time{}, err
		}
		b.TCBInfo, b.TCBInfoSignature, b.TCBInfoIssuerChain = string(signed), sig, chain
		return signedNextUpdate(what, signed)
	})
	if err != nil {
		return nil, err
	}
	err = c.get(ctx, c.qeIdentityURL(q), func(h http.Header, body []byte) (time.Time, error) {
		const what = "enclaveIdentity response"
		signed, sig, err := cutSigned(what, body, enclaveIdentityKey)
		if err != nil {
			return time.Time{}, err
		}
		chain, err := headerChain(what, h, qeIdentityChainHeaders)
		if err != nil {
			return time.Time{}, err
		}
		if err := checkSigned("qe_identity", signed, sig, chain); err != nil {
			return time.Time{}, err
		}
		b.QEIdentity, b.QEIdentitySignature, b.QEIdentityIssuerChain = string(signed), sig, chain
		return signedNextUpdate(what, signed)
	})
	if err != nil {
		return nil, err
	}
	err = c.get(ctx, c.pckCRLURL(q), func(h http.Header, body []byte) (time.Time, error) {
		const what = "PCK CRL response"
		der, err := crlDER(what, body)
		if err != nil {
			return time.Time{}, err
		}
		chain, err := headerChain(what, h, pckCRLChainHeaders)
		if err != nil {
			return time.Time{}, err
		}
		if _, err := decodeChain("pck_crl_issuer_chain", chain); err != nil {
			return time.Time{}, err
		}
		b.PCKCRL, b.PCKCRLIssuerChain = crlHex(der), chain
		return crlNextUpdate(what, der)
	})
	if err != nil {
		return nil, err
	}
	err = c.get(ctx, c.cfg.RootCACRLURL, func(_ http.Header, body []byte) (time.Time, error) {
		const what = "root CA CRL response"
		der, err := crlDER(what, body)
		if err != nil {
			return time.Time{}, err
		}
		b.RootCACRL = crlHex(der)
		return crlNextUpdate(what, der)
	})
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// checkSigned applies DecodeUnverified's format checks to one signed item, so that a
// bad response fails with its URL in the error (and a bad cache entry is
// refetched) instead of failing later in verification. The field names are
// the bundle keys the values go to.
func checkSigned(field string, signed []byte, sig, chain string) error {
	if _, err := decodeSignedText(field, string(signed)); err != nil {
		return err
	}
	if _, err := decodeSignature(field+"_signature", sig); err != nil {
		return err
	}
	_, err := decodeChain(field+"_issuer_chain", chain)
	return err
}

// get obtains the response for url and hands it to use, which stores what
// it needs and returns the item's nextUpdate. A cached response is used
// while the clock is before its nextUpdate; an unreadable or stale entry is
// refetched (an unreadable one is reported through the cache's error hook).
// Only responses that use accepts are cached.
func (c *Client) get(ctx context.Context, url string, use func(http.Header, []byte) (time.Time, error)) error {
	cache := c.cfg.Cache
	if cache != nil {
		h, body, ok := cache.load(url)
		if ok {
			next, err := use(h, body)
			if err == nil && c.cfg.Now().Before(next) {
				return nil
			}
			if err != nil {
				cache.report(fmt.Errorf("pcs: cache: entry for %s is unusable, refetching: %w", url, err))
			}
		}
	}
	h, body, err := c.cfg.Getter.Get(ctx, url)
	if err != nil {
		return fmt.Errorf("pcs: fetch %s: %w", url, err)
	}
	if _, err := use(h, body); err != nil {
		return fmt.Errorf("pcs: fetch %s: %w", url, err)
	}
	if cache != nil {
		cache.store(url, h, body)
	}
	return nil
}
