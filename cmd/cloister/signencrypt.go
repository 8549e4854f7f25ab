package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloister-dev/cloister/broker/kbsclient"
	"github.com/cloister-dev/cloister/bundle"
	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/policy"
	"github.com/cloister-dev/cloister/ratls"
	"github.com/cloister-dev/cloister/tee/appsign"
)

const signEncryptHelp = `
  cloister sign --encrypt APP --broker URL --broker-mrenclave HEX --admin-key ED25519.pem
                [--broker-trust-root PEM]... [--broker-allow-debug] [--broker-skip-tcb]
                [--key KEY.pem --config enclave.json] [--loader FILE] [--out APP.bundle]

--encrypt makes an encrypted app bundle: APP is encrypted with AES-256-GCM
under a fresh key; the key is put on the key broker at URL as a resource
(repository "cloister-bundles", type "key", a random tag) with a resource
policy releasing it only to the bundle's MRENCLAVE; and the bundle - the
loader (this binary unless --loader), the ciphertext and the loader's
configuration (broker URL, pinned broker identity, trust roots, resource) -
is written to --out (default APP.bundle). 'cloister run APP.bundle' runs the
loader in the enclave: it attests to the broker, gets the key, decrypts the
app in memory and runs it there. The host only ever holds ciphertext.

The broker is reached over RA-TLS and must show --broker-mrenclave (or
--broker-mrsigner); --broker-trust-root names roots its evidence may chain
to (the simulator root, by name), --broker-allow-debug accepts a debug
broker, --broker-skip-tcb verifies its evidence without collateral. The
same pins go into the bundle for the loader. Management uses an admin token
signed with the Ed25519 private key in --admin-key (PEM PKCS#8), as
'cloister broker admin-token' makes. With --key and --config the bundle is
also signed (APP.bundle.sig) and the policy pins the signed MRENCLAVE; without,
it is measured unsigned (a debug enclave). Prints:

  bundle <path>
  mrenclave <hex>
  resource <repository/type/tag>
`

// signRand is the source of bundle keys, nonces and resource tags. Tests
// replace it to learn the key they must then never find on the host.
var signRand io.Reader = rand.Reader

// signEncryptFlags are the flags of "sign --encrypt".
type signEncryptFlags struct {
	encrypt        *bool
	broker         *string
	brokerMR       stringList
	brokerSigner   stringList
	brokerRoots    stringList
	allowDebug     *bool
	skipTCB        *bool
	adminKey       *string
	loader         *string
	brokerTimeoutF *time.Duration
}

func (f *signEncryptFlags) register(fs *flag.FlagSet) {
	f.encrypt = fs.Bool("encrypt", false, "make an encrypted app bundle whose key only the attested bundle gets from the broker")
	f.broker = fs.String("broker", "", "with --encrypt: the key broker's `URL` (https://HOST:PORT)")
	fs.Var(&f.brokerMR, "broker-mrenclave", "with --encrypt: the broker's MRENCLAVE `HEX` (repeatable)")
	fs.Var(&f.brokerSigner, "broker-mrsigner", "with --encrypt: the broker's MRSIGNER `HEX` (repeatable)")
	fs.Var(&f.brokerRoots, "broker-trust-root", "with --encrypt: `PEM` root the broker's evidence may chain to (repeatable)")
	f.allowDebug = fs.Bool("broker-allow-debug", false, "with --encrypt: accept a debug broker enclave (development)")
	f.skipTCB = fs.Bool("broker-skip-tcb", false, "with --encrypt: verify the broker's evidence without collateral (tcb_status NotEvaluated)")
	f.adminKey = fs.String("admin-key", "", "with --encrypt: Ed25519 private `PEM` key of the broker's admin tokens")
	f.loader = fs.String("loader", "", "with --encrypt: the loader `FILE` (default: this binary)")
	f.brokerTimeoutF = fs.Duration("broker-timeout", 30*time.Second, "with --encrypt: bound on the broker requests")
}

// stray names an --encrypt-only flag was set without --encrypt.
func (f *signEncryptFlags) stray(fs *flag.FlagSet) string {
	stray := ""
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "broker", "broker-mrenclave", "broker-mrsigner", "broker-trust-root", "broker-allow-debug", "broker-skip-tcb", "admin-key", "loader", "broker-timeout":
			stray = fl.Name
		}
	})
	return stray
}

// runSignEncrypt implements "cloister sign --encrypt".
func runSignEncrypt(e *env, f *signEncryptFlags, app, out, keyFile, configFile string) error {
	switch {
	case *f.broker == "":
		return usagef("--encrypt: missing --broker URL")
	case !strings.HasPrefix(*f.broker, "https://"):
		return usagef("--broker %s: want https://HOST:PORT", *f.broker)
	case len(f.brokerMR) == 0 && len(f.brokerSigner) == 0:
		return usagef("--encrypt: missing --broker-mrenclave HEX (or --broker-mrsigner): the broker must be pinned")
	case *f.adminKey == "":
		return usagef("--encrypt: missing --admin-key ED25519.pem")
	case (keyFile == "") != (configFile == ""):
		return usagef("--encrypt: --key and --config go together (to sign the bundle)")
	}
	if out == "" {
		out = app + ".bundle"
	}
	if sameFile(out, app) || sameFile(out, *f.adminKey) {
		return usagef("--out %s would replace APP or the admin key", out)
	}
	var pins policy.Policy
	for _, h := range f.brokerMR {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return usagef("--broker-mrenclave %q: want 64 hex digits", h)
		}
		pins.MRENCLAVE = append(pins.MRENCLAVE, b)
	}
	for _, h := range f.brokerSigner {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return usagef("--broker-mrsigner %q: want 64 hex digits", h)
		}
		pins.MRSIGNER = append(pins.MRSIGNER, b)
	}
	pins.AllowDebug = *f.allowDebug
	if *f.skipTCB {
		pins.AllowStatus = []string{evidence.StatusUpToDate, evidence.StatusNotEvaluated}
	}
	var rootsPEM []byte
	for _, r := range f.brokerRoots {
		data, err := os.ReadFile(r)
		if err != nil {
			return usagef("--broker-trust-root: %v", err)
		}
		if _, err := parseCertsPEM(data); err != nil || !bytes.Contains(data, []byte("CERTIFICATE")) {
			return usagef("--broker-trust-root %s: want PEM certificates", r)
		}
		rootsPEM = append(rootsPEM, data...)
	}
	roots, _ := parseCertsPEM(rootsPEM)
	admin, err := readEd25519PrivateKey(*f.adminKey)
	if err != nil {
		return usagef("--admin-key: %v", err)
	}
	loaderPath := *f.loader
	if loaderPath == "" {
		if loaderPath, err = os.Executable(); err != nil {
			return fmt.Errorf("finding this binary (the loader): %w", err)
		}
	}
	loader, err := os.ReadFile(loaderPath)
	if err != nil {
		return fmt.Errorf("loader: %w", err)
	}
	plain, err := os.ReadFile(app)
	if err != nil {
		return fmt.Errorf("%s: %w", app, err)
	}
	var signCfg appsign.Config
	var signKey any
	if keyFile != "" {
		k, err := appsign.ReadKeyFile(keyFile)
		if err != nil {
			return fmt.Errorf("%s: %w", keyFile, err)
		}
		signKey = k
		if signCfg, err = appsign.ReadConfigFile(configFile); err != nil {
			return fmt.Errorf("%s: %w", configFile, err)
		}
	}

	key := make([]byte, bundle.KeySize)
	nonce := make([]byte, bundle.NonceSize)
	tag := make([]byte, 8)
	for _, b := range [][]byte{key, nonce, tag} {
		if _, err := io.ReadFull(signRand, b); err != nil {
			return err
		}
	}
	defer clear(key)
	resource := "cloister-bundles/key/bundle-" + hex.EncodeToString(tag)
	cfg := bundle.Config{BrokerURL: strings.TrimSuffix(*f.broker, "/"), BrokerMRENCLAVE: f.brokerMR, BrokerMRSIGNER: f.brokerSigner,
		BrokerAllowDebug: *f.allowDebug, BrokerSkipTCB: *f.skipTCB, TrustRootsPEM: string(rootsPEM), Resource: resource}
	file, err := bundle.Build(loader, plain, key, nonce, cfg)
	if err != nil {
		return err
	}
	var mr [32]byte
	var sigBytes []byte
	if signKey != nil {
		sig, err := appsign.Sign(signKey.(*rsa.PrivateKey), bytes.NewReader(file), signCfg)
		if err != nil {
			return err
		}
		mr, sigBytes = sig.MRENCLAVE, sig.Marshal()
	} else if mr, err = appsign.MeasureReader(bytes.NewReader(file), appsign.DefaultConfig()); err != nil {
		return err
	}

	// Register the key before writing the bundle: a bundle whose key the
	// broker does not hold would be useless.
	v, err := ratls.NewVerifier(ratls.VerifyOptions{Policy: pins, TrustRoots: roots, SkipTCBEvaluation: *f.skipTCB, Now: e.now})
	if err != nil {
		return usagef("broker pins: %v", err)
	}
	tr := &http.Transport{TLSClientConfig: v.ClientConfig(nil)}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: *f.brokerTimeoutF,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("the broker redirected") }}
	now := e.now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}).SignedString(admin)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	base := cfg.BrokerURL + "/kbs/v0"
	rego := fmt.Sprintf("package cloister\n\n# Written by 'cloister sign --encrypt': the bundle's key goes to the bundle only.\ndefault allow := false\n\nallow if {\n\tinput.claims.mrenclave == %q\n}\n", hex.EncodeToString(mr[:]))
	polBody, _ := json.Marshal(map[string]string{"policy": base64.StdEncoding.EncodeToString([]byte(rego))})
	// The policy first: until it is in place the broker's default policy
	// (release nothing, unless an operator chose otherwise) governs.
	if err := brokerAdmin(e.ctx, hc, http.MethodPut, base+"/resource-policy/"+resource, polBody, tok); err != nil {
		return err
	}
	if err := brokerAdmin(e.ctx, hc, http.MethodPut, base+"/resource/"+resource, key, tok); err != nil {
		return err
	}
	if err := writeFileAtomic(out, file, 0o755); err != nil {
		return fmt.Errorf("writing the bundle: %w", err)
	}
	if sigBytes != nil {
		if err := writeFileAtomic(out+".sig", sigBytes, 0o644); err != nil {
			return fmt.Errorf("writing the bundle's signature: %w", err)
		}
	}
	fmt.Fprintf(e.stdout, "bundle %s\nmrenclave %s\nresource %s\n", out, hex.EncodeToString(mr[:]), resource)
	return nil
}

// brokerAdmin sends one management request; anything but 200 fails,
// naming the broker's reason.
func brokerAdmin(ctx context.Context, hc *http.Client, method, url string, body []byte, token string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("broker: %s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, kbsclient.MaxResponse))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("broker: %s %s: HTTP %d: %s", method, url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// readEd25519PrivateKey reads a PEM PKCS#8 Ed25519 private key.
func readEd25519PrivateKey(name string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM PRIVATE KEY (PKCS#8) block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T key, want Ed25519", name, k)
	}
	return priv, nil
}
