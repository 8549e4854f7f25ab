package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ledger/receipt"
	"github.com/cloister-dev/cloister/tee/sim"
)

func TestLedgerServeReplicaUsage(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("junk"), 0o600)
	base := []string{"ledger", "serve", "--admin", "AB", "--sim-dir", filepath.Join(dir, "sim")}
	for _, extra := range [][]string{
		{"--join", "127.0.0.1:1"},                             // join without --replica-listen
		{"--node-id", "2"},                                    // id without --replica-listen
		{"--replica-listen", "127.0.0.1:1"},                   // no node id
		{"--replica-listen", "x", "--node-id", "1"},           // bad address
		{"--replica-listen", "127.0.0.1:1", "--node-id", "1"}, // no trust root
		{"--replica-listen", "127.0.0.1:1", "--node-id", "1", "--trust-root", junk, "--collateral", junk},
		{"--replica-listen", "127.0.0.1:1", "--node-id", "1", "--join", "nope", "--trust-root", junk, "--collateral", junk},
	} {
		args := append(append([]string(nil), base...), extra...)
		if r := runCLI(t, args...); r.code != exitUsage {
			t.Errorf("%v: %s", extra, r)
		}
	}
}

// TestLedgerServeReplicas: three 'ledger serve' nodes (each its enclave app
// process under host.Run) form one service on loopback: every node prints
// the same service certificate; an entry written through one node reads
// with a receipt from another, verifying with ledger/receipt against that
// one certificate, and reads name the node that served them and the
// transaction read at; a write through a follower is forwarded; the leader's
// enclave process is killed and writes through the survivors resume within a bound; with
// a second node stopped the last one refuses writes (503) and still reads.
func TestLedgerServeReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three enclave apps")
	}
	dir := t.TempDir()
	simDir := filepath.Join(dir, "sim")
	pki, err := sim.Load(simDir, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rootFile, colFile := filepath.Join(dir, "root.pem"), filepath.Join(dir, "collateral.json")
	os.WriteFile(rootFile, pki.RootPEM(), 0o600)
	col, err := pki.Collateral(rand.Reader, time.Now(), false)
	if err != nil {
		t.Fatal(err)
	}
	colJSON, err := col.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(colFile, colJSON, 0o600)
	adminKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "admin"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &adminKey.PublicKey, adminKey)
	adminPEM := filepath.Join(dir, "admin.pem")
	os.WriteFile(adminPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)

	type node struct {
		api, raft string
		stop      func() error
		exited    <-chan error
		log       *syncBuf
		certFile  string
	}
	nodes := map[int]*node{}
	for i := 1; i <= 3; i++ {
		api, err1 := freeLoopbackAddr()
		raftAddr, err2 := freeLoopbackAddr()
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		nodes[i] = &node{api: api, raft: raftAddr, certFile: filepath.Join(dir, fmt.Sprintf("service%d.pem", i))}
	}
	var svcPEM []byte
	for i := 1; i <= 3; i++ {
		n := nodes[i]
		args := []string{"--listen", n.api, "--admin-cert", adminPEM, "--state", filepath.Join(dir, fmt.Sprint("state", i)),
			"--sim-dir", simDir, "--service-cert-out", n.certFile, "--netns=false", "--sign-interval", "5ms",
			"--replica-listen", n.raft, "--node-id", fmt.Sprint(i), "--trust-root", rootFile, "--collateral", colFile}
		if i > 1 {
			args = append(args, "--join", nodes[1].raft)
		}
		n.stop, n.log, n.exited = ledgerServe(t, args...)
		for j := 0; ; j++ { // a bound on a hang, not a timing assertion
			if strings.Contains(n.log.String(), "serving the ACL API") {
				if b, err := os.ReadFile(n.certFile); err == nil {
					if svcPEM == nil {
						svcPEM = b
					} else if string(b) != string(svcPEM) {
						t.Fatalf("node %d printed another service certificate", i)
					}
					break
				}
			}
			if j == 1200 {
				t.Fatalf("node %d did not start:\n%s", i, n.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	blk, _ := pem.Decode(svcPEM)
	svc, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(svc)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: adminKey}}}}}
	defer client.CloseIdleConnections()
	do := func(i int, method, path, body string) (int, http.Header, []byte, error) {
		req, _ := http.NewRequest(method, "https://"+nodes[i].api+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b, nil
	}
	// write appends through node i, retrying while the service has no
	// leader (503), up to a bound.
	write := func(i int, contents string) ledger.TxID {
		t.Helper()
		for j := 0; ; j++ {
			code, h, b, err := do(i, "POST", "/app/transactions?api-version=2022-05-13&collectionId=c", `{"contents":"`+contents+`"}`)
			if err == nil && code == 200 {
				tx, err := ledger.ParseTxID(h.Get("x-ms-ccf-transaction-id"))
				if err != nil {
					t.Fatalf("write through node %d: %v", i, err)
				}
				return tx
			}
			if err == nil && code != http.StatusServiceUnavailable {
				t.Fatalf("write through node %d: %d %s", i, code, b)
			}
			if j == 600 { // a bound on a hang, not a timing assertion
				t.Fatalf("no write through node %d: %v %d %s", i, err, code, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// readReceipt reads tx's entry and receipt from node i and verifies
	// the receipt against the service certificate.
	readReceipt := func(i int, tx ledger.TxID, contents string) {
		t.Helper()
		for j := 0; ; j++ {
			code, h, b, err := do(i, "GET", "/app/transactions/"+tx.String()+"/receipt?api-version=2022-05-13", "")
			if err != nil {
				t.Fatal(err)
			}
			if code == 200 && strings.Contains(string(b), `"Ready"`) {
				if h.Get("x-cloister-node-id") != fmt.Sprint(i) {
					t.Fatalf("node %d answered as node %q", i, h.Get("x-cloister-node-id"))
				}
				at, err := ledger.ParseTxID(h.Get("x-ms-ccf-transaction-id"))
				if err != nil || at.Seqno < tx.Seqno {
					t.Fatalf("node %d served the receipt of %s at %q", i, tx, h.Get("x-ms-ccf-transaction-id"))
				}
				resp, err := receipt.Parse(b)
				if err != nil {
					t.Fatalf("receipt from node %d: %v", i, err)
				}
				res, err := receipt.Verify(resp, receipt.Options{ServiceCert: svcPEM})
				if err != nil {
					t.Fatalf("receipt from node %d: %v", i, err)
				}
				if res.TransactionID != tx.String() {
					t.Fatalf("receipt from node %d is for %s, not %s", i, res.TransactionID, tx)
				}
				break
			}
			if j == 600 {
				t.Fatalf("no receipt for %s from node %d: %d %s", tx, i, code, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
		code, _, b, err := do(i, "GET", "/app/transactions/"+tx.String()+"?api-version=2022-05-13&collectionId=c", "")
		if err != nil || code != 200 || !strings.Contains(string(b), `"contents":"`+contents+`"`) {
			t.Fatalf("entry %s from node %d: %v %d %s", tx, i, err, code, b)
		}
	}

	tx1 := write(1, "one")
	readReceipt(2, tx1, "one")
	readReceipt(3, tx1, "one")
	tx2 := write(3, "via-follower-or-leader")
	readReceipt(1, tx2, "via-follower-or-leader")

	// Find and stop the leader.
	_, h, _, err := do(2, "GET", "/app/transactions/current?api-version=2022-05-13&collectionId=c", "")
	if err != nil {
		t.Fatal(err)
	}
	var lead int
	fmt.Sscan(h.Get("x-cloister-leader-id"), &lead)
	if nodes[lead] == nil {
		t.Fatalf("node 2 names leader %q", h.Get("x-cloister-leader-id"))
	}
	// Kill the leader's enclave process outright (SIGKILL: a crash, not a
	// shutdown); its host then ends.
	m := regexp.MustCompile(`enclave started"? pid=(\d+)`).FindStringSubmatch(nodes[lead].log.String())
	if m == nil {
		t.Fatalf("no enclave pid in node %d's log:\n%s", lead, nodes[lead].log)
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing leader %d (pid %d): %v", lead, pid, err)
	}
	select {
	case <-nodes[lead].exited:
	case <-time.After(time.Minute): // a bound on a hang, not a timing assertion
		t.Fatalf("node %d's host did not end after its enclave was killed", lead)
	}
	var alive []int
	for i := 1; i <= 3; i++ {
		if i != lead {
			alive = append(alive, i)
		}
	}
	tx3 := write(alive[0], "after")
	if tx3.Seqno <= tx2.Seqno {
		t.Fatalf("write after failover at %s, not after %s", tx3, tx2)
	}
	readReceipt(alive[1], tx3, "after")
	readReceipt(alive[1], tx1, "one")

	// One node of three left: it cannot reach a quorum, so a write is
	// refused with 503 and Retry-After (never acknowledged), while its
	// committed state still serves reads.
	if err := nodes[alive[0]].stop(); err != nil {
		t.Fatalf("stopping node %d: %v", alive[0], err)
	}
	code, h, b, err := do(alive[1], "POST", "/app/transactions?api-version=2022-05-13&collectionId=c", `{"contents":"minority"}`)
	if err != nil || code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("a write on a node without quorum: %v %d %v %s", err, code, h, b)
	}
	readReceipt(alive[1], tx3, "after")
	t.Logf("leader was node %d; failover write %s through node %d", lead, tx3, alive[0])
}
