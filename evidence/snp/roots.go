package snp

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"
)

// Product lines Cloister verifies. The names are go-sev-guest's (and AMD
// KDS's) product-line names.
const (
	ProductMilan = "Milan"
	ProductGenoa = "Genoa"
	ProductTurin = "Turin"
)

// knownProduct reports whether p is a product line with built-in roots.
func knownProduct(p string) bool {
	return p == ProductMilan || p == ProductGenoa || p == ProductTurin
}

// productRoots is one product line's AMD root key (ARK) and the two
// intermediates it certifies: the ASK (issues VCEKs) and the ASVK (issues
// VLEKs).
type productRoots struct {
	ark, ask, asvk *x509.Certificate
}

// builtinRoots parses, once, the ARK/ASK and ARK/ASVK bundles that
// go-sev-guest embeds (verify/trust: ask_ark_{milan,genoa,turin_vcek}.pem
// and the *_vlek.pem files, copied by go-sev-guest from
// https://kdsintf.amd.com/{vcek,vlek}/v1/<product>/cert_chain). We parse the
// bytes ourselves rather than use trust.DefaultRootCerts because that map
// carries only the VCEK side (no ASVK), and because we want the result
// immutable and errors returned rather than panicked.
var builtinRoots = sync.OnceValues(func() (map[string]productRoots, error) {
	bundles := []struct {
		product    string
		vcek, vlek []byte
	}{
		{ProductMilan, trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes},
		{ProductGenoa, trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes},
		{ProductTurin, trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes},
	}
	out := make(map[string]productRoots, len(bundles))
	for _, b := range bundles {
		ask, ark, err := parseBundle(b.vcek)
		if err != nil {
			return nil, fmt.Errorf("snp: built-in %s VCEK bundle: %w", b.product, err)
		}
		asvk, ark2, err := parseBundle(b.vlek)
		if err != nil {
			return nil, fmt.Errorf("snp: built-in %s VLEK bundle: %w", b.product, err)
		}
		// Both bundles must hang off the same root; if AMD ever re-issued
		// one of them we want to know rather than trust two roots.
		if !bytes.Equal(ark.Raw, ark2.Raw) {
			return nil, fmt.Errorf("snp: built-in %s bundles carry different ARKs", b.product)
		}
		out[b.product] = productRoots{ark: ark, ask: ask, asvk: asvk}
	}
	return out, nil
})

// parseBundle splits a KDS cert_chain PEM bundle (intermediate first, then
// ARK) into certificates. Trailing whitespace is trimmed first because
// go-sev-guest v0.15.0 ships ask_ark_turin_vlek.pem with an extra CRLF that
// its own kds.ParseProductCertChain rejects as trailing bytes (its init
// never loads that file, so it does not notice).
func parseBundle(pemBytes []byte) (ica, ark *x509.Certificate, err error) {
	icaDER, arkDER, err := kds.ParseProductCertChain(bytes.TrimRight(pemBytes, " \t\r\n"))
	if err != nil {
		return nil, nil, err
	}
	if ica, err = x509.ParseCertificate(icaDER); err != nil {
		return nil, nil, err
	}
	if ark, err = x509.ParseCertificate(arkDER); err != nil {
		return nil, nil, err
	}
	return ica, ark, nil
}

// isASVK reports whether an intermediate certifies VLEKs rather than
// VCEKs. AMD names them SEV-VLEK-<product> and SEV-<product>; go-sev-guest
// (trust.ProductCerts.Decode) tells them apart the same way.
func isASVK(c *x509.Certificate) bool {
	return strings.HasPrefix(c.Subject.CommonName, "SEV-VLEK")
}

// isSelfIssued reports whether c names itself as issuer (an ARK). Such a
// certificate from the evidence or the caller's chain is never used as an
// intermediate, and never as a trust anchor either: anchors come only from
// the built-in roots or Options.TrustRoots.
func isSelfIssued(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer)
}

// trustedRoots builds go-sev-guest's TrustedRoots for one product line:
// one entry per (trusted ARK, intermediate issued by it) pair. go-sev-guest
// tries each entry and accepts the endorsement key if any chain verifies,
// so every intermediate we were given gets its chance, but only ever under
// an ARK we trust.
//
// anchors replaces the built-in ARK when non-empty. Intermediates are the
// built-in ASK/ASVK of the product plus those the caller or the certificate
// table supplied (extra).
func trustedRoots(product string, signer abi.ReportSigner, anchors []*x509.Certificate, extra []*x509.Certificate) (map[string][]*trust.AMDRootCerts, error) {
	builtin, err := builtinRoots()
	if err != nil {
		return nil, err
	}
	pr, ok := builtin[product]
	if !ok {
		return nil, fmt.Errorf("snp: no built-in roots for product %q", product)
	}
	arks := anchors
	if len(arks) == 0 {
		arks = []*x509.Certificate{pr.ark}
	}
	icas := []*x509.Certificate{pr.ask, pr.asvk}
	for _, c := range extra {
		if !isSelfIssued(c) {
			icas = append(icas, c)
		}
	}
	var entries []*trust.AMDRootCerts
	seen := map[string]bool{}
	for _, ark := range arks {
		for _, ica := range icas {
			// Only the intermediate kind that issues this signer's key
			// matters, and only if the ARK's name is its issuer; x509
			// verification would refuse the rest anyway.
			if isASVK(ica) != (signer == abi.VlekReportSigner) || !bytes.Equal(ica.RawIssuer, ark.RawSubject) {
				continue
			}
			key := string(ark.Raw) + "\x00" + string(ica.Raw)
			if seen[key] {
				continue
			}
			seen[key] = true
			pc := &trust.ProductCerts{Ark: ark}
			if signer == abi.VlekReportSigner {
				pc.Asvk = ica
			} else {
				pc.Ask = ica
			}
			entries = append(entries, &trust.AMDRootCerts{ProductLine: product, ProductCerts: pc})
		}
	}
	return map[string][]*trust.AMDRootCerts{product: entries}, nil
}
