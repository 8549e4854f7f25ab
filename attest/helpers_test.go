package attest

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"testing"
)

// osMkdirTemp makes the package-wide sim directory; it outlives single
// tests (the fixture is shared), so it lives in the system temp dir.
func osMkdirTemp() (string, error) {
	d, err := os.MkdirTemp("", "attest-sim-*")
	if err == nil {
		simDirs = append(simDirs, d)
	}
	return d, err
}

// simDirs are removed by TestMain when the package's tests end.
var simDirs []string

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range simDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// fetchCerts reads the JWKS a relying party would, from base+"/certs", and
// returns the first key's kid and its x5c chain.
func fetchCerts(t *testing.T, base string) (string, []*x509.Certificate) {
	t.Helper()
	resp, err := http.Get(base + "/certs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string   `json:"kid"`
			X5C []string `json:"x5c"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("/certs: %v (%d keys)", err, len(set.Keys))
	}
	certs, err := ParseX5C(set.Keys[0].X5C)
	if err != nil {
		t.Fatal(err)
	}
	return set.Keys[0].Kid, certs
}
