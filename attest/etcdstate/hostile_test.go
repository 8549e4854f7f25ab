package etcdstate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/attest"
	"github.com/cloister-dev/cloister/attest/etcdstate"
	"github.com/cloister-dev/cloister/evidence/pcs"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/sim"
)

type signer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newSigner(t *testing.T, cn string) signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return signer{cert: cert, key: key}
}

// sign returns a compact ES256 JWS of claims with the signer in x5c.
func (s signer) sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(s.cert.Raw)}
	out, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (s signer) policy(t *testing.T, text string) string {
	return s.sign(t, jwt.MapClaims{"AttestationPolicy": base64.RawURLEncoding.EncodeToString([]byte(text))})
}

func (s signer) addRequest(t *testing.T, c *x509.Certificate) string {
	return s.sign(t, jwt.MapClaims{"policyCertificate": map[string]any{"kty": "EC", "x5c": []string{base64.StdEncoding.EncodeToString(c.Raw)}}})
}

// waitAcked waits until every replica registered under the store has
// acknowledged rev (a bounded wait, not a timing assertion).
func waitAcked(t *testing.T, st *etcdstate.Store, rev int64, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		recs, _, err := st.Snapshot(ctx, "applied/")
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, r := range recs {
			if v, _ := strconv.ParseInt(string(r.Value), 10, 64); v >= rev {
				done++
			}
		}
		if done >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("replicas did not acknowledge revision %d: %v", rev, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// etcd is outside the TEE. In isolated mode a hostile etcd (here: a
// client writing the service's keys directly) cannot make a replica use
// an unsigned policy, a policy signed by a signer it smuggled into the
// signer set, or publish a token key that is not attested as this
// service's code; the replica refuses such a policy (503, never judging
// by it) and leaves such a key out of /certs. Signer changes made through
// the API (a signed certificates:add) are accepted by every replica.
func TestHostileStoreIsolatedMode(t *testing.T) {
	w := getWorld(t)
	trusted, intruder, added := newSigner(t, "trusted"), newSigner(t, "intruder"), newSigner(t, "added")
	prefix := newPrefix()
	nodes := startReplicas(t, w, 2, replicaOpts{prefix: prefix, signers: []*x509.Certificate{trusted.cert}})
	hostile, err := etcdstate.Open(etcdstate.Options{Endpoints: w.cluster.Endpoints(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer hostile.Close()
	ctx := t.Context()
	q := sgxQuote(t, w, "hostile")
	attestStatus := func(n *replicaNode) (int, jwt.MapClaims) {
		code, out, err := attestRetry(t, n, q)
		if err != nil {
			t.Fatal(err)
		}
		if code != 200 {
			if code == http.StatusServiceUnavailable && errCode(out) != "PolicyUnavailable" {
				t.Fatalf("replica fenced for a minute: %v", out)
			}
			return code, nil
		}
		return code, parseUnverified(t, out["token"].(string))
	}

	// A signed policy through the API is in force everywhere.
	code, out, err := call(ctx, http.DefaultClient, "PUT", nodes[0].srv.URL+"/policies/SgxEnclave"+av, trusted.policy(t, policyText("signed")))
	if err != nil || code != 200 {
		t.Fatalf("signed PUT: %d %v %v", code, out, err)
	}
	for i, n := range nodes {
		if code, c := attestStatus(n); code != 200 || c["marker"] != "signed" {
			t.Fatalf("replica %d: %d %v", i, code, c)
		}
	}

	// An unsigned policy written straight into etcd is refused.
	rev, err := hostile.Put(ctx, "policy/SgxEnclave", []byte(attest.UnsignedPolicy(policyText("evil"))), -1)
	if err != nil {
		t.Fatal(err)
	}
	waitAcked(t, hostile, rev, 2)
	for i, n := range nodes {
		if code, c := attestStatus(n); code != http.StatusServiceUnavailable {
			t.Errorf("replica %d with an unsigned policy in etcd: %d %v, want 503", i, code, c)
		}
	}

	// A signer smuggled into the set (no signed add request), and a policy
	// it signed: refused too, and the API still refuses its uploads.
	entries, _ := json.Marshal([]map[string]any{{"cert": trusted.cert.Raw}, {"cert": intruder.cert.Raw}})
	if _, err := hostile.Put(ctx, "signers", entries, -1); err != nil {
		t.Fatal(err)
	}
	if rev, err = hostile.Put(ctx, "policy/SgxEnclave", []byte(intruder.policy(t, policyText("evil"))), -1); err != nil {
		t.Fatal(err)
	}
	waitAcked(t, hostile, rev, 2)
	for i, n := range nodes {
		if code, c := attestStatus(n); code != http.StatusServiceUnavailable {
			t.Errorf("replica %d with a smuggled signer's policy in etcd: %d %v, want 503", i, code, c)
		}
	}
	code, _, _ = call(ctx, http.DefaultClient, "PUT", nodes[1].srv.URL+"/policies/SgxEnclave"+av, intruder.policy(t, policyText("evil")))
	if code != http.StatusForbidden {
		t.Errorf("PUT signed by the smuggled signer: %d, want 403", code)
	}

	// A signer added through the API (signed by a trusted signer) is
	// accepted by both replicas: its policy is in force everywhere.
	code, out, err = call(ctx, http.DefaultClient, "POST", nodes[0].srv.URL+"/certificates:add"+av, trusted.addRequest(t, added.cert))
	if err != nil || code != 200 {
		t.Fatalf("certificates:add: %d %v %v", code, out, err)
	}
	code, out, err = call(ctx, http.DefaultClient, "PUT", nodes[1].srv.URL+"/policies/SgxEnclave"+av, added.policy(t, policyText("added")))
	if err != nil || code != 200 {
		t.Fatalf("PUT signed by the added signer: %d %v %v", code, out, err)
	}
	for i, n := range nodes {
		if code, c := attestStatus(n); code != 200 || c["marker"] != "added" {
			t.Errorf("replica %d: %d %v, want the added signer's policy", i, code, c)
		}
	}

	// Removing that signer (through the API) withdraws its policy on
	// every replica when the request returns: policies are checked
	// against the current set, so the type answers 503 until a policy of
	// a remaining signer is set.
	code, out, err = call(ctx, http.DefaultClient, "POST", nodes[1].srv.URL+"/certificates:remove"+av, trusted.addRequest(t, added.cert))
	if err != nil || code != 200 {
		t.Fatalf("certificates:remove: %d %v %v", code, out, err)
	}
	for i, n := range nodes {
		if code, c := attestStatus(n); code != http.StatusServiceUnavailable {
			t.Errorf("replica %d after the signer's removal: %d %v, want 503", i, code, c)
		}
	}

	// Token keys: one genuinely attested but by other code (another
	// MRENCLAVE), one whose kid is not its key's hash, one with no
	// evidence at all. None reaches /certs.
	otherPlat, err := sim.NewPlatform(w.pki, tee.KindSimSGX, sim.App{MRENCLAVE: [32]byte{0xcc}, MRSIGNER: [32]byte{0xbb}, ProductID: 1, SVN: 1}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := attest.New(attest.Config{Platform: otherPlat, TrustRoots: []*x509.Certificate{w.pki.Root}, Alg: "ES256", Issuer: issuer,
		Collateral: func(context.Context, []byte) (*pcs.Bundle, error) { return w.col, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	srv := httptest.NewServer(other)
	defer srv.Close()
	var jwks struct{ Keys []map[string]any }
	resp, err := http.Get(srv.URL + "/certs")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	foreign := jwks.Keys[0]
	mine := keySet(t, nodes[0].srv.URL)
	var own map[string]any
	{
		resp, err := http.Get(nodes[0].srv.URL + "/certs")
		if err != nil {
			t.Fatal(err)
		}
		var set struct{ Keys []map[string]any }
		_ = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		own = set.Keys[0]
	}
	renamed := map[string]any{}
	for k, v := range own {
		renamed[k] = v
	}
	renamed["kid"] = "renamed-kid"
	bare := map[string]any{}
	for k, v := range own {
		bare[k] = v
	}
	bare["kid"] = "bare-kid"
	bare["x5c"] = own["x5c"].([]any)[:1]
	injected := map[string]map[string]any{foreign["kid"].(string): foreign, "renamed-kid": renamed, "bare-kid": bare}
	for kid, jwk := range injected {
		raw, _ := json.Marshal(jwk)
		rec, _ := json.Marshal(map[string]any{"owner": "ghost", "jwk": json.RawMessage(raw)})
		if rev, err = hostile.Put(ctx, "key/"+kid, rec, -1); err != nil {
			t.Fatal(err)
		}
	}
	waitAcked(t, hostile, rev, 2)
	for i, n := range nodes {
		got := kids(keySet(t, n.srv.URL))
		for kid := range injected {
			if got[kid] {
				t.Errorf("replica %d publishes the injected key %s", i, kid)
			}
		}
		if len(got) != len(mine.Keys) {
			t.Errorf("replica %d publishes %d keys, want %d", i, len(got), len(mine.Keys))
		}
	}
}
