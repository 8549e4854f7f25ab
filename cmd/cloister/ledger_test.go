package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/kv"
	"github.com/cloister-dev/cloister/kv/kvtest"
	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/tee/sim"
)

func TestLedgerServeUsage(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	for _, args := range [][]string{
		{"ledger", "serve"}, // no administrator
		{"ledger", "serve", "--admin", "AB", "--listen", "x"}, // bad address
		{"ledger", "serve", "--admin-cert", junk},
		{"ledger", "serve", "--admin-cert", filepath.Join(dir, "missing.pem")},
		{"ledger", "serve", "--admin", "AB", "extra"},
		{"ledger", "serve", "--admin", "AB", "--tee", "sgx"},
	} {
		if r := runCLI(t, args...); r.code != exitUsage {
			t.Errorf("%v: %s", args, r)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// ledgerServe runs 'ledger serve' in-process (the node itself is this
// test binary under host.Run, dispatched by TestMain) and returns a stop
// function that cancels it and returns its error.
func ledgerServe(t *testing.T, args ...string) (stop func() error, log *syncBuf, exited <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	log = &syncBuf{}
	done := make(chan error, 1)
	ended := make(chan error, 1)
	go func() {
		err := runLedgerServe(&env{ctx: ctx, stdin: strings.NewReader(""), stdout: log, stderr: log, now: time.Now}, args)
		ended <- err
		done <- err
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop, log, ended
}

// TestLedgerServeEndToEnd: the node serves over TLS chaining to the service
// certificate it printed; an entry's receipt verifies (merkle proof walked,
// ECDSA over the root, node certificate issued by the service); a restart
// keeps the entry and the service certificate; a host that edits a
// segment gets the node refused at startup with the named error.
func TestLedgerServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the enclave app")
	}
	dir := t.TempDir()
	adminKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "admin"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &adminKey.PublicKey, adminKey)
	adminPEM := filepath.Join(dir, "admin.pem")
	os.WriteFile(adminPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	addr, err := freeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	certOut := filepath.Join(dir, "service.pem")
	args := []string{"--listen", addr, "--admin-cert", adminPEM, "--state", filepath.Join(dir, "state"),
		"--sim-dir", filepath.Join(dir, "sim"), "--service-cert-out", certOut, "--netns=false"}

	start := func() (func() error, *http.Client, *x509.Certificate) {
		os.Remove(certOut)
		stop, log, _ := ledgerServe(t, args...)
		var svc []byte
		for i := 0; ; i++ {
			if strings.Contains(log.String(), "serving the ACL API") {
				if svc, err = os.ReadFile(certOut); err == nil {
					break
				}
			}
			if i == 600 {
				stop()
				t.Fatalf("the ledger did not start:\n%s", log)
			}
			time.Sleep(50 * time.Millisecond)
		}
		blk, _ := pem.Decode(svc)
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
			Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: adminKey}}}}}
		return stop, c, cert
	}
	get := func(c *http.Client, method, path, body string, out any) int {
		req, _ := http.NewRequest(method, "https://"+addr+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if out != nil {
			json.Unmarshal(b, out)
		}
		if m, ok := out.(*map[string]string); ok && resp.Header.Get("x-ms-ccf-transaction-id") != "" {
			(*m)["tx"] = resp.Header.Get("x-ms-ccf-transaction-id")
		}
		return resp.StatusCode
	}

	stop, c, svc := start()
	created := map[string]string{}
	if code := get(c, "POST", "/app/transactions?api-version=2022-05-13&collectionId=c", `{"contents":"kept"}`, &created); code != 200 {
		t.Fatalf("create: %d", code)
	}
	tx := created["tx"]
	var rc ledger.TransactionReceipt
	for i := 0; rc.State != "Ready"; i++ {
		if i == 200 {
			t.Fatal("no receipt")
		}
		time.Sleep(20 * time.Millisecond)
		get(c, "GET", "/app/transactions/"+tx+"/receipt?api-version=2022-05-13", "", &rc)
	}
	verifyReceiptWithLibraries(t, &rc, svc)
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	stop, c, svc2 := start()
	if !svc2.Equal(svc) {
		t.Fatal("the service certificate changed across a restart")
	}
	var entry struct{ Entry map[string]string }
	if code := get(c, "GET", "/app/transactions/"+tx+"?api-version=2022-05-13&collectionId=c", "", &entry); code != 200 || entry.Entry["contents"] != "kept" {
		t.Fatalf("after restart: %d %v", code, entry)
	}
	stop()

	// The host edits a segment: the node refuses to start, naming it.
	s, err := host.OpenBoltStore(filepath.Join(dir, "state", "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	b := kvtest.HostBackend(s)
	v, ok, _ := b.Get(context.Background(), ledger.SegmentKey(1))
	if !ok {
		t.Fatal("no segment 1")
	}
	v[len(v)-1] ^= 1
	b.Commit(context.Background(), []kv.Op{{Key: ledger.SegmentKey(1), Value: v}})
	s.Close()
	stop, log, exited := ledgerServe(t, args...)
	select {
	case err = <-exited:
	case <-time.After(2 * time.Minute): // a bound on a hang, not a timing assertion
		stop()
		t.Fatalf("a tampered store was served:\n%s", log)
	}
	var exit *exitStatusError
	if !errors.As(err, &exit) || exit.code != 1 || !strings.Contains(log.String(), "segment does not authenticate") {
		t.Fatalf("a tampered store: %v\n%s", err, log)
	}
}

// verifyReceiptWithLibraries checks an ACL receipt with
// transparency-dev/merkle's path (ledger.Walk over ledger.Hasher) and
// crypto/ecdsa, and the node certificate against the service certificate.
func verifyReceiptWithLibraries(t *testing.T, rc *ledger.TransactionReceipt, svc *x509.Certificate) {
	t.Helper()
	r := rc.Receipt
	var lc ledger.LeafComponents
	lc.WriteSetDigest = hex32(t, r.LeafComponents.WriteSetDigest)
	lc.ClaimsDigest = hex32(t, r.LeafComponents.ClaimsDigest)
	lc.CommitEvidence = r.LeafComponents.CommitEvidence
	steps := make([]ledger.ProofStep, len(r.Proof))
	for i, p := range r.Proof {
		h := p.Right
		if p.Left != "" {
			h, steps[i].Left = p.Left, true
		}
		steps[i].Hash = hex32(t, h)
	}
	root := ledger.Walk(lc.Leaf(), steps)
	blk, _ := pem.Decode([]byte(r.Cert))
	node, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.CheckSignatureFrom(svc); err != nil {
		t.Fatalf("node certificate: %v", err)
	}
	if ledger.NodeIDOf(node) != r.NodeID {
		t.Fatal("nodeId")
	}
	var sig []byte
	if sig, err = base64Std(r.Signature); err != nil || !ecdsa.VerifyASN1(node.PublicKey.(*ecdsa.PublicKey), root[:], sig) {
		t.Fatalf("signature over the root: %v", err)
	}
}

func base64Std(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

func hex32(t *testing.T, s string) [32]byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		t.Fatalf("%q is not 32 hex bytes", s)
	}
	return [32]byte(b)
}

// TestAttestServeRecordsInLedger: `attest serve --ledger` against a
// running `ledger serve` (both on one simulator): the token names its
// ledger record, and `ledger audit` lists it with the token's digest.
func TestAttestServeRecordsInLedger(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the enclave app")
	}
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	now := time.Now()
	pki, err := sim.Load(simDir, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	rootFile, colFile := filepath.Join(dir, "root.pem"), filepath.Join(dir, "col.json")
	os.WriteFile(rootFile, pki.RootPEM(), 0o600)
	if r := runCLIAt(t, now, "sim", "collateral", "--sim-dir", simDir); r.code != 0 {
		t.Fatal(r)
	} else {
		os.WriteFile(colFile, []byte(r.stdout), 0o600)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attest"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "attest.pem"), filepath.Join(dir, "attest.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	addr, err := freeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	svcFile := filepath.Join(dir, "service.pem")
	stop, log, _ := ledgerServe(t, "--listen", addr, "--admin-cert", certFile, "--state", filepath.Join(dir, "state"),
		"--sim-dir", simDir, "--service-cert-out", svcFile, "--netns=false")
	defer stop()
	var mrenclave string
	for i := 0; ; i++ {
		if l := log.String(); strings.Contains(l, "serving the ACL API") {
			if _, err := os.Stat(svcFile); err == nil {
				_, after, _ := strings.Cut(l, "mrenclave=")
				mrenclave, _, _ = strings.Cut(after, " ")
				break
			}
		}
		if i == 600 {
			t.Fatalf("the ledger did not start:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ledgerArgs := []string{"--ledger", "https://" + addr, "--ledger-cert", svcFile, "--ledger-client-cert", certFile,
		"--ledger-client-key", keyFile, "--ledger-mrenclave", mrenclave, "--ledger-allow-debug"}
	srv := serveInProcess(t, time.Now, append([]string{"--tee", "sim-sgx", "--sim-dir", simDir, "--addr", "127.0.0.1:0",
		"--trust-root", rootFile}, ledgerArgs...)...)
	tok := attestHello(t, pki, "http://"+srv.addr)
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	txid, _ := claims["x-cloister-ledger-txid"].(string)
	if txid == "" {
		t.Fatalf("the token names no ledger record: %v", claims)
	}
	r := runCLIAt(t, time.Now(), append([]string{"ledger", "audit", "--trust-root", rootFile, "--collateral", colFile}, ledgerArgs...)...)
	if r.code != 0 {
		t.Fatal(r)
	}
	var recs []map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil || len(recs) != 1 {
		t.Fatalf("audit: %v\n%s", err, r)
	}
	sum := sha256.Sum256([]byte(tok))
	if recs[0]["transactionId"] != txid || recs[0]["tokenDigest"] != hex.EncodeToString(sum[:]) {
		t.Fatalf("audit %v, token %s", recs[0], txid)
	}
	// A wrong measurement: the ledger is refused, exit 1.
	bad := append([]string{"ledger", "audit", "--trust-root", rootFile, "--collateral", colFile}, ledgerArgs...)
	for i, a := range bad {
		if a == mrenclave {
			bad[i] = strings.Repeat("00", 32)
		}
	}
	if r := runCLIAt(t, time.Now(), bad...); r.code != exitFailed {
		t.Fatalf("a ledger with another measurement: %s", r)
	}
	srv.stop()
}
