package bundle

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

var testCfg = Config{BrokerURL: "https://broker.test:8443", BrokerMRENCLAVE: []string{strings.Repeat("ab", 32)}, Resource: "bundles/key/app"}

func build(t testing.TB) ([]byte, []byte, []byte) {
	t.Helper()
	key := make([]byte, KeySize)
	nonce := make([]byte, NonceSize)
	rand.Read(key)
	rand.Read(nonce)
	app := []byte("\x7fELF the app's code: PLAINTEXT-MARKER")
	b, err := Build([]byte("\x7fELF loader"), app, key, nonce, testCfg)
	if err != nil {
		t.Fatal(err)
	}
	return b, key, app
}

// Build → Parse → Decrypt gives the app back; the file holds no plaintext
// and no key.
func TestRoundTrip(t *testing.T) {
	b, key, app := build(t)
	if bytes.Contains(b, []byte("PLAINTEXT-MARKER")) || bytes.Contains(b, key) {
		t.Fatal("the bundle holds the app or the key in clear")
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.LoaderSize != len("\x7fELF loader") || p.Config.Resource != testCfg.Resource {
		t.Fatalf("parsed %+v", p)
	}
	got, err := p.Decrypt(key)
	if err != nil || !bytes.Equal(got, app) {
		t.Fatalf("Decrypt = %q, %v", got, err)
	}
	other := make([]byte, KeySize)
	if _, err := p.Decrypt(other); err == nil {
		t.Error("another key decrypted the app")
	}
}

// Every strict prefix is refused; so is any flipped byte after the
// loader (ciphertext: digest; config: JSON or digest; trailer: lengths
// or magic) - or, where Parse cannot see it (the loader), by nothing
// here: the measurement covers the loader.
func TestTamperAndTruncation(t *testing.T) {
	b, key, _ := build(t)
	p, _ := Parse(b)
	for n := 0; n < len(b); n++ {
		if _, err := Parse(b[:n]); err == nil {
			t.Fatalf("prefix of %d bytes parsed", n)
		}
	}
	for i := p.LoaderSize; i < len(b); i++ {
		m := bytes.Clone(b)
		m[i] ^= 0x01
		q, err := Parse(m)
		if err != nil {
			continue
		}
		// A flip that still parses (e.g. a hex digit's case) must not
		// decrypt to anything.
		if _, err := q.Decrypt(key); err == nil && !bytes.Equal(m[i:i+1], b[i:i+1]) {
			if bytes.Equal(q.Ciphertext, p.Ciphertext) && q.Config.Nonce == p.Config.Nonce && q.Config.Resource == p.Config.Resource {
				continue // the flip hit a config byte the cipher does not use
			}
			t.Fatalf("byte %d flipped: the bundle still decrypts", i)
		}
	}
	if _, err := Parse([]byte("plain ELF")); !errors.Is(err, ErrNotBundle) {
		t.Errorf("a plain file: %v, want ErrNotBundle", err)
	}
	// Lengths pointing outside the file.
	m := bytes.Clone(b)
	binary.LittleEndian.PutUint64(m[len(m)-TrailerSize:], uint64(len(m)))
	if _, err := Parse(m); err == nil {
		t.Error("a config length beyond the file parsed")
	}
}

// Configs that do not pin the broker, or are not https, are refused.
func TestBuildRefusesBadConfig(t *testing.T) {
	key, nonce := make([]byte, KeySize), make([]byte, NonceSize)
	for _, c := range []Config{
		{BrokerURL: "http://b", BrokerMRENCLAVE: testCfg.BrokerMRENCLAVE, Resource: "a/b/c"},
		{BrokerURL: "https://b", Resource: "a/b/c"},
		{BrokerURL: "https://b", BrokerMRENCLAVE: []string{"abcd"}, Resource: "a/b/c"},
		{BrokerURL: "https://b", BrokerMRENCLAVE: testCfg.BrokerMRENCLAVE},
	} {
		if _, err := Build([]byte("l"), []byte("app"), key, nonce, c); err == nil {
			t.Errorf("Build accepted %+v", c)
		}
	}
	b, _, _ := build(t)
	if _, err := Build(b, []byte("app"), key, nonce, testCfg); err == nil {
		t.Error("a bundle was accepted as a loader")
	}
}

// Parse never panics and never accepts a ciphertext that does not match
// its digest. Seeded with a real bundle.
func FuzzParse(f *testing.F) {
	b, _, _ := build(f)
	f.Add(b)
	f.Add(b[len(b)-200:])
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		if p.LoaderSize < 0 || p.LoaderSize+len(p.Ciphertext) > len(data) {
			t.Fatalf("views outside the file: %d+%d of %d", p.LoaderSize, len(p.Ciphertext), len(data))
		}
	})
}
