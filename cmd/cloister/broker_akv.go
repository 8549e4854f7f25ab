package main

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"github.com/cloister-dev/cloister/broker/akv"
)

// The Azure Key Vault secure key release surface of `cloister broker
// serve` (broker/akv), served at the URL root as Azure's vaults are.
func init() {
	var authorities, authorityCAs stringList
	brokerExtensions = append(brokerExtensions, brokerExtension{
		name: "akv",
		flags: func(fs *flag.FlagSet) {
			// A new run (tests run the command many times in one
			// process) starts from no values.
			authorities, authorityCAs = nil, nil
			fs.Var(&authorities, "akv-authority", "attestation token issuer `URL` (https) whose tokens may release Azure Key Vault keys: "+
				"`cloister attest serve` or any MAA-shaped service; its JWKS is found through URL/.well-known/openid-configuration (repeatable)")
			fs.Var(&authorityCAs, "akv-authority-ca", "`PEM` certificates trusted for the TLS of --akv-authority (default: the system roots; "+
				"for an RA-TLS attestation service, its certificate after `cloister verify cert`) (repeatable)")
		},
		mount: func(mux *http.ServeMux, c *brokerCommon) error {
			return mountAKV(mux, c, authorities, authorityCAs)
		},
	})
}

// mountAKV mounts the vault at "/" when the broker serves https and has a
// bearer token for its clients (--admin-token-file; --insecure-admin
// accepts any token). Otherwise it says why in the log and mounts
// nothing: Azure's clients send credentials over https only.
func mountAKV(mux *http.ServeMux, c *brokerCommon, authorities, cas []string) error {
	// A bounded client: an authority that stops answering costs a release
	// at most this long (and waiters return when their requests end).
	client := &http.Client{Timeout: 30 * time.Second}
	if len(cas) > 0 {
		pool := x509.NewCertPool()
		for _, f := range cas {
			certs, err := readCertificates(f)
			if err != nil {
				return usagef("--akv-authority-ca: %v", err)
			}
			for _, cert := range certs {
				pool.AddCert(cert)
			}
		}
		client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	var auths []akv.Authority
	for _, u := range authorities {
		a, err := akv.DiscoveredAuthority(u, client, c.now)
		if err != nil {
			return usagef("--akv-authority: %v", err)
		}
		auths = append(auths, a)
	}
	if c.publicURL.Scheme != "https" {
		c.log.Info("akv: Azure Key Vault surface not served: it needs --tls (Azure's clients send their credentials over https only)")
		return nil
	}
	if c.adminToken == "" && !c.insecureAdmin {
		c.log.Info("akv: Azure Key Vault surface not served: no --admin-token-file for its clients' bearer token")
		return nil
	}
	if len(auths) == 0 {
		c.log.Warn("akv: no --akv-authority: keys can be created and read, but every release is refused")
	}
	signer, chain, err := akvSigningKey(c)
	if err != nil {
		return err
	}
	store, err := c.openStore(c.ctx, "akv")
	if err != nil {
		return err
	}
	v, err := akv.New(akv.Config{Store: store, VaultURL: c.publicURL.String(), AccessToken: c.adminToken,
		AnyAccessToken: c.insecureAdmin, Authorities: auths, Signer: signer, SignerChain: chain,
		Now: c.now, Rand: c.rand, Logger: c.log})
	if err != nil {
		return err
	}
	mux.Handle("/", v)
	c.log.Info("akv: Azure Key Vault surface at the URL root", "vault", c.publicURL.String(), "authorities", len(auths))
	return nil
}

// akvSigningKey makes the key that signs release results, for this
// process's life, with a self-signed certificate naming the vault: a
// client reaches the vault over the broker's attested TLS, which is what
// makes the key trustworthy; x5c lets Azure's result parsers find it.
func akvSigningKey(c *brokerCommon) (*rsa.PrivateKey, []*x509.Certificate, error) {
	k, err := rsa.GenerateKey(c.rand, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("release signing key: %w", err)
	}
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "cloister broker akv release signing " + c.publicURL.Host},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(c.rand, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, nil, fmt.Errorf("release signing certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return k, []*x509.Certificate{cert}, nil
}
