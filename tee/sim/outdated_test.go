package sim

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A sim directory made before the certificates carried Intel's required
// extensions is refused with ErrOutdated and the reset command, instead
// of producing evidence the verifier rejects for a missing extension;
// Reset then makes it usable again.
func TestLoadOutdatedPKI(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p, err := Load(dir, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	// The PCK certificate as an older simulator wrote it: no CRL
	// distribution points and no key identifiers.
	old := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: PCKCN},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature}
	c, err := sign(rand.Reader, old, p.PCKCA, p.pckKey, p.pckCAKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, pckCertFile), certPEM(c), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir, rand.Reader, now)
	if !errors.Is(err, ErrOutdated) || !strings.Contains(err.Error(), "cloister sim reset --sim-dir "+dir) {
		t.Fatalf("Load of an outdated sim dir: %v, want ErrOutdated naming the reset command", err)
	}
	if _, err := Reset(dir, rand.Reader, now); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if _, err := Load(dir, rand.Reader, now); err != nil {
		t.Fatalf("Load after Reset: %v", err)
	}
}
