package pcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// tdxFMSPC is the FMSPC of go-tdx-guest's sample collateral.
var tdxFMSPC = []byte{0x50, 0x80, 0x6f, 0x00, 0x00, 0x00}

// pcsEscape percent-encodes s the way Intel PCS encodes issuer-chain
// headers: everything but RFC 3986 unreserved characters, so '+', '/',
// '=' and the spaces and newlines of PEM all become %XX.
func pcsEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// fakeResponse is one canned answer.
type fakeResponse struct {
	header http.Header
	body   []byte
}

// fakeGetter is a map-backed Getter that counts requests per URL, so tests
// can tell whether the cache answered.
type fakeGetter struct {
	mu        sync.Mutex
	responses map[string]fakeResponse
	calls     map[string]int
}

func newFakeGetter(responses map[string]fakeResponse) *fakeGetter {
	return &fakeGetter{responses: responses, calls: make(map[string]int)}
}

// Get answers from the map; an unknown URL is an error, as a 404 would be.
func (g *fakeGetter) Get(_ context.Context, u string) (http.Header, []byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls[u]++
	r, ok := g.responses[u]
	if !ok {
		return nil, nil, fmt.Errorf("fake: GET %s: status 404 Not Found", u)
	}
	return r.header.Clone(), bytes.Clone(r.body), nil
}

// count returns the requests made for u, or for all URLs if u is "".
func (g *fakeGetter) count(u string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if u != "" {
		return g.calls[u]
	}
	n := 0
	for _, c := range g.calls {
		n += c
	}
	return n
}

// tdxResponses returns go-tdx-guest's sample PCS answers keyed by URL
// under base (path + query exactly as the client builds them), with the
// issuer chains in the headers encoded by escape.
func tdxResponses(t *testing.T, base string, escape func(string) string) map[string]fakeResponse {
	tcbChain := escape(string(readVector(t, tdxTCBChainFile)))
	pckChain := escape(string(readVector(t, tdxPCKChainFile)))
	return map[string]fakeResponse{
		base + "/tdx/certification/v4/tcb?fmspc=50806f000000": {
			header: http.Header{"Tcb-Info-Issuer-Chain": {tcbChain}},
			body:   readVector(t, tdxTCBInfoFile),
		},
		base + "/tdx/certification/v4/qe/identity": {
			header: http.Header{"Sgx-Enclave-Identity-Issuer-Chain": {tcbChain}},
			body:   readVector(t, tdxQEIdentityFile),
		},
		base + "/sgx/certification/v4/pckcrl?ca=platform&encoding=der": {
			header: http.Header{"Sgx-Pck-Crl-Issuer-Chain": {pckChain}},
			body:   readVector(t, tdxPCKCRLFile),
		},
		base + "/IntelSGXRootCA.der": {body: readVector(t, tdxRootCRLFile)},
	}
}

// newTDXServer serves tdxResponses over HTTP and counts requests.
func newTDXServer(t *testing.T, escape func(string) string) (*httptest.Server, *fakeGetter) {
	var fake *fakeGetter
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, body, err := fake.Get(r.Context(), "BASE"+r.URL.RequestURI())
		if err != nil {
			w.Header().Set("Error-Code", "NotFound")
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		maps.Copy(w.Header(), h)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	fake = newFakeGetter(tdxResponses(t, "BASE", escape))
	return srv, fake
}

// signedSlice returns the bytes between `{"<key>":` and `,"signature"` in
// body, the signed region as testdata/README.md describes it, found
// without any JSON parser.
func signedSlice(t *testing.T, body []byte, key string) []byte {
	t.Helper()
	prefix := []byte(`{"` + key + `":`)
	end := bytes.LastIndex(body, []byte(`,"signature"`))
	if !bytes.HasPrefix(body, prefix) || end < 0 {
		t.Fatalf("body does not have the %s response shape", key)
	}
	return body[len(prefix):end]
}

// TestCutSignedIsByteExact checks that the json.RawMessage cut keeps the
// exact signed bytes: same length as documented, identical to the slice
// found by byte search, and the signature verifies over it.
func TestCutSignedIsByteExact(t *testing.T) {
	chain, err := decodeChain("chain", string(readVector(t, tdxTCBChainFile)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file, key string
		wantLen   int
	}{
		{tdxTCBInfoFile, tcbInfoKey, tdxSignedTCBInfoLen},
		{tdxQEIdentityFile, enclaveIdentityKey, tdxSignedQEIdentityLen},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			body := readVector(t, tt.file)
			signed, sigHex, err := cutSigned("response", body, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if len(signed) != tt.wantLen {
				t.Errorf("signed text is %d bytes, want %d", len(signed), tt.wantLen)
			}
			if want := signedSlice(t, body, tt.key); !bytes.Equal(signed, want) {
				t.Error("signed text differs from the byte slice of the body")
			}
			sig, err := decodeSignature("signature", sigHex)
			if err != nil {
				t.Fatal(err)
			}
			verifyRS(t, tt.key, chain[0], signed, sig)
		})
	}
}

// TestFetchTDX fetches go-tdx-guest's sample collateral from an HTTP
// server and checks that the bundle carries the signed text byte-exact
// (the signatures verify over it), the chains from the headers and the
// CRLs as lowercase hex; then that ParseBundle(Marshal()) round-trips it.
// It runs with Intel's header encoding and with url.PathEscape's, which
// leaves '+' unescaped: a decoder using QueryUnescape would turn those into
// spaces and break the certificates.
func TestFetchTDX(t *testing.T) {
	escapes := map[string]func(string) string{"intel": pcsEscape, "PathEscape": url.PathEscape}
	for name, escape := range escapes {
		t.Run(name, func(t *testing.T) {
			if name == "PathEscape" && !strings.Contains(escape(string(readVector(t, tdxTCBChainFile))), "+") {
				t.Fatal("test vector has no '+' to exercise PathUnescape")
			}
			srv, fake := newTDXServer(t, escape)
			c, err := NewClient(Config{
				BaseURL:      srv.URL,
				RootCACRLURL: srv.URL + "/IntelSGXRootCA.der",
				Getter:       HTTPGetter{Client: srv.Client()},
			})
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.Fetch(context.Background(), Query{TEE: TDX, FMSPC: tdxFMSPC, CA: "platform"})
			if err != nil {
				t.Fatal(err)
			}
			if got := fake.count(""); got != 4 {
				t.Errorf("%d requests, want 4", got)
			}
			wantTCB := signedSlice(t, readVector(t, tdxTCBInfoFile), tcbInfoKey)
			if b.TCBInfo != string(wantTCB) {
				t.Error("tcb_info is not the signed slice of the response")
			}
			wantQE := signedSlice(t, readVector(t, tdxQEIdentityFile), enclaveIdentityKey)
			if b.QEIdentity != string(wantQE) {
				t.Error("qe_identity is not the signed slice of the response")
			}
			if b.TCBInfoIssuerChain != string(readVector(t, tdxTCBChainFile)) ||
				b.PCKCRLIssuerChain != string(readVector(t, tdxPCKChainFile)) {
				t.Error("issuer chains differ from the PEM files")
			}
			if b.PCKCRL != fmt.Sprintf("%x", readVector(t, tdxPCKCRLFile)) ||
				b.RootCACRL != fmt.Sprintf("%x", readVector(t, tdxRootCRLFile)) {
				t.Error("CRLs are not the lowercase hex of the DER files")
			}
			d, err := b.DecodeUnverified()
			if err != nil {
				t.Fatal(err)
			}
			verifyRS(t, "tcb_info", d.TCBInfoChain[0], []byte(b.TCBInfo), d.TCBInfoSignature)
			verifyRS(t, "qe_identity", d.QEIdentityChain[0], []byte(b.QEIdentity), d.QEIdentitySignature)

			out, err := b.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			b2, err := ParseBundle(out)
			if err != nil {
				t.Fatal(err)
			}
			if *b2 != *b {
				t.Error("ParseBundle(Marshal()) changed the bundle")
			}
		})
	}
}

// TestFetchSGXPaths checks the SGX URLs (and the processor CA) with the
// map fake: the client must ask exactly these.
func TestFetchSGXPaths(t *testing.T) {
	const base = "https://pcs.example"
	tdx := tdxResponses(t, base, pcsEscape)
	r := func(suffix string) fakeResponse { return tdx[base+suffix] }
	fake := newFakeGetter(map[string]fakeResponse{
		base + "/sgx/certification/v4/tcb?fmspc=00a067110000":           r("/tdx/certification/v4/tcb?fmspc=50806f000000"),
		base + "/sgx/certification/v4/qe/identity":                      r("/tdx/certification/v4/qe/identity"),
		base + "/sgx/certification/v4/pckcrl?ca=processor&encoding=der": r("/sgx/certification/v4/pckcrl?ca=platform&encoding=der"),
		"https://root.example/crl.der":                                  r("/IntelSGXRootCA.der"),
	})
	c, err := NewClient(Config{BaseURL: base + "/", RootCACRLURL: "https://root.example/crl.der", Getter: fake})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(context.Background(), Query{TEE: SGX, FMSPC: []byte{0, 0xa0, 0x67, 0x11, 0, 0}, CA: "processor"}); err != nil {
		t.Fatal(err)
	}
	if got := fake.count(""); got != 4 {
		t.Errorf("%d requests, want 4", got)
	}
}

// TestFetchOlderHeaderNames checks that the older issuer-chain header
// names are accepted.
func TestFetchOlderHeaderNames(t *testing.T) {
	const base = "https://pcs.example"
	resp := tdxResponses(t, base, pcsEscape)
	tcb := resp[base+"/tdx/certification/v4/tcb?fmspc=50806f000000"]
	tcb.header = http.Header{"Sgx-Tcb-Info-Issuer-Chain": tcb.header["Tcb-Info-Issuer-Chain"]}
	resp[base+"/tdx/certification/v4/tcb?fmspc=50806f000000"] = tcb
	qe := resp[base+"/tdx/certification/v4/qe/identity"]
	qe.header = http.Header{"Sgx-Qe-Identity-Issuer-Chain": qe.header["Sgx-Enclave-Identity-Issuer-Chain"]}
	resp[base+"/tdx/certification/v4/qe/identity"] = qe
	c, err := NewClient(Config{BaseURL: base, RootCACRLURL: base + "/IntelSGXRootCA.der", Getter: newFakeGetter(resp)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(context.Background(), Query{TEE: TDX, FMSPC: tdxFMSPC, CA: "platform"}); err != nil {
		t.Fatal(err)
	}
}

// TestFetchBadResponses breaks one response at a time; Fetch must fail
// with an error that names the URL and the fault.
func TestFetchBadResponses(t *testing.T) {
	const base = "https://pcs.example"
	tcbURL := base + "/tdx/certification/v4/tcb?fmspc=50806f000000"
	qeURL := base + "/tdx/certification/v4/qe/identity"
	crlURL := base + "/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
	rootURL := base + "/IntelSGXRootCA.der"
	tests := []struct {
		name string
		url  string
		edit func(r *fakeResponse)
		want string
	}{
		{"tcb truncated", tcbURL, func(r *fakeResponse) { r.body = r.body[:100] }, "tcbInfo response: truncated JSON"},
		{"tcb wrong member", tcbURL, func(r *fakeResponse) { r.body = bytes.Replace(r.body, []byte(`"tcbInfo"`), []byte(`"tcbinfo"`), 1) }, `tcbInfo response: unknown key "tcbinfo"`},
		{"tcb not an object", tcbURL, func(r *fakeResponse) { r.body = []byte(`{"tcbInfo":"x","signature":"00"}`) }, `tcbInfo response: "tcbInfo" is not a JSON object`},
		{"tcb no signature", tcbURL, func(r *fakeResponse) { r.body = []byte(`{"tcbInfo":{}}`) }, `tcbInfo response: missing "signature"`},
		{"tcb duplicate member", tcbURL, func(r *fakeResponse) { r.body = append([]byte(`{"tcbInfo":{},`), r.body[1:]...) }, `tcbInfo response: duplicate key "tcbInfo"`},
		{"tcb trailing data", tcbURL, func(r *fakeResponse) { r.body = append(r.body, "{}"...) }, "tcbInfo response: trailing data"},
		{"tcb bad signature length", tcbURL, func(r *fakeResponse) {
			end := bytes.LastIndex(r.body, []byte(`"}`))
			r.body = append(r.body[:end:end], `00"}`...)
		}, "pcs: tcb_info_signature: want 128 hex characters, got 130"},
		{"tcb no nextUpdate", tcbURL, func(r *fakeResponse) {
			r.body = bytes.Replace(r.body, []byte(`"nextUpdate"`), []byte(`"nextUpdatX"`), 1)
		}, `tcbInfo response: nextUpdate ""`},
		{"tcb chain header missing", tcbURL, func(r *fakeResponse) { r.header = nil }, "tcbInfo response: missing header TCB-Info-Issuer-Chain"},
		{"tcb chain header twice", tcbURL, func(r *fakeResponse) { r.header.Add("Tcb-Info-Issuer-Chain", "x") }, "tcbInfo response: 2 TCB-Info-Issuer-Chain headers, want one"},
		{"tcb chain bad escape", tcbURL, func(r *fakeResponse) { r.header.Set("Tcb-Info-Issuer-Chain", "%zz") }, "tcbInfo response: header TCB-Info-Issuer-Chain is not URL-encoded"},
		{"tcb chain junk", tcbURL, func(r *fakeResponse) { r.header.Set("Tcb-Info-Issuer-Chain", "junk") }, "pcs: tcb_info_issuer_chain: unexpected data at byte 0"},
		{"qe wrong member", qeURL, func(r *fakeResponse) {
			r.body = bytes.Replace(r.body, []byte(`"enclaveIdentity"`), []byte(`"qeIdentity"`), 1)
		}, `enclaveIdentity response: unknown key "qeIdentity"`},
		{"qe chain missing", qeURL, func(r *fakeResponse) { r.header = nil }, "enclaveIdentity response: missing header SGX-Enclave-Identity-Issuer-Chain"},
		{"crl not a CRL", crlURL, func(r *fakeResponse) { r.body = []byte{0x30, 0x03, 0x02, 0x01, 0x01} }, "PCK CRL response: not a DER CRL"},
		{"crl empty", crlURL, func(r *fakeResponse) { r.body = nil }, "PCK CRL response: empty"},
		{"crl chain missing", crlURL, func(r *fakeResponse) { r.header = nil }, "PCK CRL response: missing header SGX-PCK-CRL-Issuer-Chain"},
		{"root crl truncated", rootURL, func(r *fakeResponse) { r.body = r.body[:100] }, "root CA CRL response: not a DER CRL"},
		{"not found", rootURL, nil, "fake: GET " + rootURL + ": status 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tdxResponses(t, base, pcsEscape)
			if tt.edit == nil {
				delete(resp, tt.url)
			} else {
				r := resp[tt.url]
				r.header = r.header.Clone()
				tt.edit(&r)
				resp[tt.url] = r
			}
			c, err := NewClient(Config{BaseURL: base, RootCACRLURL: rootURL, Getter: newFakeGetter(resp)})
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.Fetch(context.Background(), Query{TEE: TDX, FMSPC: tdxFMSPC, CA: "platform"})
			if err == nil || b != nil {
				t.Fatalf("Fetch succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.url) {
				t.Errorf("error %q does not name the URL", err)
			}
		})
	}
}

// TestHTTPGetterErrors checks the status and size checks of HTTPGetter.
func TestHTTPGetterErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			w.Header().Set("Error-Code", "InvalidParameter")
			w.Header().Set("Error-Message", "bad fmspc")
			w.WriteHeader(http.StatusBadRequest)
		case "/big":
			w.Write(make([]byte, maxResponseSize+1))
		case "/limit":
			w.Write(make([]byte, maxResponseSize))
		}
	}))
	defer srv.Close()
	g := HTTPGetter{Client: srv.Client()}
	ctx := context.Background()

	_, _, err := g.Get(ctx, srv.URL+"/missing")
	want := "pcs: GET " + srv.URL + "/missing: status 400 Bad Request Error-Code InvalidParameter Error-Message bad fmspc"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	_, _, err = g.Get(ctx, srv.URL+"/big")
	if err == nil || !strings.Contains(err.Error(), "body larger than 524288 bytes") {
		t.Errorf("oversized body: got %v", err)
	}
	_, body, err := g.Get(ctx, srv.URL+"/limit")
	if err != nil || len(body) != maxResponseSize {
		t.Errorf("body at the limit: %d bytes, %v", len(body), err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := g.Get(cctx, srv.URL+"/limit"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: got %v, want context.Canceled", err)
	}
}

// TestQueryValidation checks that bad queries fail before any request.
func TestQueryValidation(t *testing.T) {
	fake := newFakeGetter(nil)
	c, err := NewClient(Config{Getter: fake})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		q    Query
		want string
	}{
		{Query{TEE: "snp", FMSPC: tdxFMSPC, CA: "platform"}, `pcs: query: TEE "snp", want "sgx" or "tdx"`},
		{Query{TEE: TDX, FMSPC: tdxFMSPC[:5], CA: "platform"}, "pcs: query: FMSPC is 5 bytes, want 6"},
		{Query{TEE: SGX, FMSPC: nil, CA: "platform"}, "pcs: query: FMSPC is 0 bytes, want 6"},
		{Query{TEE: SGX, FMSPC: tdxFMSPC, CA: "Platform"}, `pcs: query: CA "Platform", want "processor" or "platform"`},
	}
	for _, tt := range tests {
		_, err := c.Fetch(context.Background(), tt.q)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Fetch(%+v) = %v, want %q", tt.q, err, tt.want)
		}
	}
	if n := fake.count(""); n != 0 {
		t.Errorf("%d requests made for invalid queries", n)
	}
}

// TestNewClientConfig checks validation and defaults of Config.
func TestNewClientConfig(t *testing.T) {
	cache, err := NewCache(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		cfg  Config
		want string
	}{
		{Config{Cache: cache}, "pcs: config: Now is required when Cache is set"},
		{Config{BaseURL: "api.trustedservices.intel.com"}, "want an absolute http or https URL"},
		{Config{BaseURL: "ftp://x"}, "want an absolute http or https URL"},
		{Config{BaseURL: "https://x/?a=b"}, "must not have a query or fragment"},
		{Config{RootCACRLURL: "/root.der"}, "RootCACRLURL"},
	}
	for _, tt := range bad {
		if _, err := NewClient(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewClient(%+v) = %v, want error containing %q", tt.cfg, err, tt.want)
		}
	}
	c, err := NewClient(Config{})
	if err != nil {
		t.Fatal(err)
	}
	q := Query{TEE: TDX, FMSPC: tdxFMSPC, CA: "platform"}
	if got, want := c.tcbInfoURL(q), "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000"; got != want {
		t.Errorf("tcbInfoURL = %q, want %q", got, want)
	}
	if got, want := c.qeIdentityURL(q), "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity"; got != want {
		t.Errorf("qeIdentityURL = %q, want %q", got, want)
	}
	if got, want := c.pckCRLURL(q), "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der"; got != want {
		t.Errorf("pckCRLURL = %q, want %q", got, want)
	}
	if c.cfg.RootCACRLURL != DefaultRootCACRLURL {
		t.Errorf("RootCACRLURL = %q", c.cfg.RootCACRLURL)
	}
	if _, ok := c.cfg.Getter.(HTTPGetter); !ok {
		t.Errorf("default Getter is %T", c.cfg.Getter)
	}
}

// TestCutSignedRejectsEveryTruncation: no strict prefix of a real PCS
// response (up to its closing brace) yields a signed text.
func TestCutSignedRejectsEveryTruncation(t *testing.T) {
	for _, tt := range []struct{ file, key string }{
		{tdxTCBInfoFile, tcbInfoKey},
		{tdxQEIdentityFile, enclaveIdentityKey},
	} {
		body := readVector(t, tt.file)
		end := bytes.LastIndexByte(body, '}')
		for i := 0; i <= end; i++ {
			if _, _, err := cutSigned("response", body[:i], tt.key); err == nil {
				t.Fatalf("%s: prefix of %d bytes accepted", tt.file, i)
			}
		}
	}
}
