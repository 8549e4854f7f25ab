package qvldiff

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/evidence/pcs"
)

// variant is one input to both verifiers: a base changed by one mutation.
type variant struct {
	base   *base
	kind   string // the mutation family, used by the allowlist
	desc   string // what exactly was changed, to read and to replay
	quote  []byte
	bundle pcs.Bundle
	at     time.Time
}

func (v *variant) String() string {
	return fmt.Sprintf("%s %s: %s at %s (%d)", v.base.name, v.kind, v.desc, v.at.Format(time.RFC3339), v.at.Unix())
}

var tcbStatuses = []string{"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
	"OutOfDate", "OutOfDateConfigurationNeeded", "Revoked", "Bogus"}

// jsonPath is one location in a decoded JSON document.
type jsonPath struct {
	parent any // map[string]any or []any
	key    string
	index  int
	value  any
	name   string
}

func walkJSON(v any, name string, parent any, key string, index int, out *[]jsonPath) {
	*out = append(*out, jsonPath{parent: parent, key: key, index: index, value: v, name: name})
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walkJSON(x[k], name+"."+k, x, k, -1, out)
		}
	case []any:
		for i, e := range x {
			walkJSON(e, fmt.Sprintf("%s[%d]", name, i), x, "", i, out)
		}
	}
}

func (p jsonPath) set(v any) {
	switch par := p.parent.(type) {
	case map[string]any:
		par[p.key] = v
	case []any:
		par[p.index] = v
	}
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// editJSON applies one random edit to the JSON object text and returns the
// new text (compact, as Go marshals it) and what was done. The root object
// itself is never deleted.
func editJSON(r *rand.Rand, text, rootName string) (string, string) {
	d := json.NewDecoder(strings.NewReader(text))
	d.UseNumber()
	var doc any
	if err := d.Decode(&doc); err != nil {
		return text, "unparsable, unchanged"
	}
	var paths []jsonPath
	walkJSON(doc, rootName, nil, "", -1, &paths)
	p := paths[1+r.IntN(len(paths)-1)]
	desc := ""
	// Deleting a member is possible for any value inside an object.
	if _, inObj := p.parent.(map[string]any); inObj && r.IntN(6) == 0 {
		delete(p.parent.(map[string]any), p.key)
		desc = "delete " + p.name
	} else {
		switch v := p.value.(type) {
		case json.Number:
			n, _ := strconv.ParseInt(string(v), 10, 64)
			choices := []int64{n + 1, n - 1, 0, 255, 256, 65535, 65536, -1}
			nv := choices[r.IntN(len(choices))]
			p.set(json.Number(strconv.FormatInt(nv, 10)))
			desc = fmt.Sprintf("%s=%d (was %s)", p.name, nv, v)
		case string:
			var nv string
			switch {
			case p.key == "tcbStatus":
				nv = tcbStatuses[r.IntN(len(tcbStatuses))]
			case strings.Contains(strings.ToLower(p.key), "date") || p.key == "nextUpdate":
				tt, err := time.Parse(time.RFC3339, v)
				if err != nil || r.IntN(8) == 0 {
					nv = "2025-13-01T00:00:00Z"
				} else {
					shifts := []time.Duration{time.Second, -time.Second, 24 * time.Hour, -24 * time.Hour, 400 * 24 * time.Hour, -400 * 24 * time.Hour}
					nv = tt.Add(shifts[r.IntN(len(shifts))]).UTC().Format(time.RFC3339)
				}
			case isHex(v):
				switch r.IntN(4) {
				case 0:
					b := []byte(v)
					i := r.IntN(len(b))
					b[i] = "0123456789ABCDEF"[r.IntN(16)]
					nv = string(b)
				case 1:
					nv = strings.ToLower(v)
				case 2:
					nv = v[:len(v)-2]
				default:
					nv = v + "00"
				}
			default:
				nv = []string{"", "X", v + "X"}[r.IntN(3)]
			}
			p.set(nv)
			desc = fmt.Sprintf("%s=%q (was %q)", p.name, nv, v)
		case []any:
			nv := slices.Clone(v)
			switch r.IntN(5) {
			case 0:
				slices.Reverse(nv)
				desc = "reverse " + p.name
			case 1:
				if len(nv) > 0 {
					nv = nv[1:]
				}
				desc = "drop first of " + p.name
			case 2:
				if len(nv) > 0 {
					nv = append([]any{deepCopy(nv[0])}, nv...)
				}
				desc = "duplicate first of " + p.name
			case 3:
				nv = nil
				desc = "empty " + p.name
			default:
				if len(nv) > 1 {
					i, j := r.IntN(len(nv)), r.IntN(len(nv))
					nv[i], nv[j] = nv[j], nv[i]
					desc = fmt.Sprintf("swap %s[%d] and [%d]", p.name, i, j)
				} else {
					desc = "swap in short " + p.name
				}
			}
			if nv == nil {
				nv = []any{}
			}
			p.set(nv)
		case map[string]any:
			if len(v) == 0 {
				desc = "empty object " + p.name
				break
			}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			k := keys[r.IntN(len(keys))]
			delete(v, k)
			desc = "delete " + p.name + "." + k
		default:
			p.set(nil)
			desc = p.name + "=null"
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return text, "marshal failed, unchanged"
	}
	return string(out), desc
}

func deepCopy(v any) any {
	b, _ := json.Marshal(v)
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out any
	_ = d.Decode(&out)
	return out
}

// quoteRegion picks a random named region of q and an offset in it.
func quoteRegion(r *rand.Rand, q []byte, only ...string) (string, int) {
	l, err := layoutOf(q)
	if err != nil {
		return "whole", r.IntN(len(q))
	}
	var regs [][3]any
	for _, rg := range l.regions() {
		if rg[2].(int) > rg[1].(int) && (len(only) == 0 || slices.Contains(only, rg[0].(string))) {
			regs = append(regs, rg)
		}
	}
	rg := regs[r.IntN(len(regs))]
	lo, hi := rg[1].(int), rg[2].(int)
	return rg[0].(string), lo + r.IntN(hi-lo)
}

// resignedQuote re-signs a (mutated) quote of a test-PKI base with the
// base's chain. The QE report data is re-bound unless keep is set.
func (b *base) resignedQuote(t testing.TB, q []byte, keep bool) []byte {
	return b.pki.resign(t, q, chainPEM(b.nul, b.leaf, b.ca, b.pki.root), keep)
}

// pickTime returns base.at, or, one time in three, a validity boundary of
// the variant's inputs, -1 s, exact or +1 s.
func pickTime(r *rand.Rand, v *variant) (time.Time, string) {
	if r.IntN(3) != 0 {
		return v.base.at, ""
	}
	bs := boundaries(nil, v.quote, v.bundle)
	if len(bs) == 0 {
		return v.base.at, ""
	}
	d := time.Duration(r.IntN(3)-1) * time.Second
	return bs[r.IntN(len(bs))].Add(d), fmt.Sprintf(" [time: boundary %+ds]", int(d/time.Second))
}

// mutate makes variant number i of the run with the given seed. The
// variant depends only on (seed, i) and the bases, so a failure replays
// with CLOISTER_QVL_SEED and CLOISTER_QVL_ONLY.
func mutate(t testing.TB, bases []*base, seed uint64, i int) *variant {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	b := bases[r.IntN(len(bases))]
	v := &variant{base: b, quote: slices.Clone(b.quote), bundle: b.bundle, at: b.at}
	kinds := []string{"flip", "overwrite", "collateral-flip", "time"}
	if b.pki != nil {
		kinds = append(kinds, "resign-flip", "resign-flip", "tcbinfo-edit", "tcbinfo-edit", "tcbinfo-edit", "qeid-edit", "qeid-edit", "crl", "cert")
	}
	v.kind = kinds[r.IntN(len(kinds))]
	switch v.kind {
	case "flip", "overwrite":
		reg, off := quoteRegion(r, v.quote)
		old := v.quote[off]
		if v.kind == "flip" {
			v.quote[off] ^= byte(1 + r.IntN(255))
		} else {
			v.quote[off] = byte(r.IntN(256))
		}
		v.kind += ":" + reg
		v.desc = fmt.Sprintf("quote[%d] %02x->%02x", off, old, v.quote[off])
	case "resign-flip":
		reg, off := quoteRegion(r, v.quote, "header", "body", "qe-report", "auth-data", "v5-body-desc")
		old := v.quote[off]
		v.quote[off] ^= byte(1 << r.IntN(8))
		if reg == "v5-body-desc" || reg == "header" && off < 2 {
			// A changed version or body size changes the layout: re-sign
			// only what still parses.
			if _, err := layoutOf(v.quote); err != nil {
				v.kind = "flip:" + reg
				v.desc = fmt.Sprintf("quote[%d] %02x->%02x (unsigned: layout broken)", off, old, v.quote[off])
				break
			}
		}
		l, _ := layoutOf(b.quote)
		keep := reg == "qe-report" && off-l.qeReport >= 320
		v.quote = b.resignedQuote(t, v.quote, keep)
		v.kind += ":" + reg
		v.desc = fmt.Sprintf("quote[%d] %02x->%02x, re-signed", off, old, v.quote[off])
	case "collateral-flip":
		fields := []struct {
			name string
			p    *string
		}{{"tcb_info", &v.bundle.TCBInfo}, {"tcb_info_signature", &v.bundle.TCBInfoSignature},
			{"qe_identity", &v.bundle.QEIdentity}, {"qe_identity_signature", &v.bundle.QEIdentitySignature}}
		f := fields[r.IntN(len(fields))]
		s := []byte(*f.p)
		off := r.IntN(len(s))
		old := s[off]
		if strings.HasSuffix(f.name, "signature") {
			s[off] = "0123456789abcdef"[r.IntN(16)]
		} else {
			const alphabet = "0123456789ABCDEFabcdef\"{}[],: x"
			s[off] = alphabet[r.IntN(len(alphabet))]
		}
		*f.p = string(s)
		v.kind += ":" + f.name
		v.desc = fmt.Sprintf("%s[%d] %q->%q (not re-signed)", f.name, off, old, s[off])
	case "time":
		bs := boundaries(t, v.quote, v.bundle)
		tt := bs[r.IntN(len(bs))]
		d := time.Duration(r.IntN(3)-1) * time.Second
		v.at = tt.Add(d)
		v.desc = fmt.Sprintf("boundary %s %+ds", tt.Format(time.RFC3339), int(d/time.Second))
		return v
	case "tcbinfo-edit":
		var d string
		v.bundle.TCBInfo, d = editJSON(r, v.bundle.TCBInfo, "tcbInfo")
		v.bundle = b.pki.resignBundle(t, v.bundle, b.rootCRL, b.pckCRL, b.ca, b.caKey)
		v.desc = d
	case "qeid-edit":
		var d string
		v.bundle.QEIdentity, d = editJSON(r, v.bundle.QEIdentity, "enclaveIdentity")
		v.bundle = b.pki.resignBundle(t, v.bundle, b.rootCRL, b.pckCRL, b.ca, b.caKey)
		v.desc = d
	case "crl":
		crlCase(t, v, r.IntN(crlCases))
	case "cert":
		certCase(t, v, r.IntN(certCases))
	}
	if at, d := pickTime(r, v); d != "" {
		v.at = at
		v.desc += d
	}
	return v
}

// crlCases and certCases count the revocation and certificate-validity
// edits crlCase and certCase make.
const (
	crlCases  = 5
	certCases = 4
)

// crlCase re-issues the CRLs of v's base with edit k: a certificate
// revoked, or a CRL whose window ends just before or starts just after v.at.
func crlCase(t testing.TB, v *variant, k int) {
	b := v.base
	rootCRL, pckCRL := b.rootCRL, b.pckCRL
	rootCRL.revoked = slices.Clone(rootCRL.revoked)
	pckCRL.revoked = slices.Clone(pckCRL.revoked)
	revoke := func(c *x509.Certificate) x509.RevocationListEntry {
		return x509.RevocationListEntry{SerialNumber: new(big.Int).Set(c.SerialNumber), RevocationTime: b.at.Add(-time.Hour)}
	}
	switch k {
	case 0:
		pckCRL.revoked = append(pckCRL.revoked, revoke(b.leaf))
		v.desc = "PCK certificate on the PCK CRL"
	case 1:
		rootCRL.revoked = append(rootCRL.revoked, revoke(b.ca))
		v.desc = "PCK CA on the root CA CRL"
	case 2:
		rootCRL.revoked = append(rootCRL.revoked, revoke(b.pki.tcbSigning))
		v.desc = "TCB signing certificate on the root CA CRL"
	case 3:
		pckCRL.thisUpdate, pckCRL.nextUpdate = b.at.Add(time.Second), b.at.Add(time.Hour)
		v.desc = "PCK CRL thisUpdate 1 s after the time"
	default:
		rootCRL.thisUpdate, rootCRL.nextUpdate = b.at.Add(-time.Hour), b.at.Add(-time.Second)
		v.desc = "root CA CRL nextUpdate 1 s before the time"
	}
	v.bundle = b.pki.resignBundle(t, v.bundle, rootCRL, pckCRL, b.ca, b.caKey)
}

// certCase re-issues the PCK chain of v's base with edit k.
func certCase(t testing.TB, v *variant, k int) {
	b := v.base
	leaf, ca := b.leaf, b.ca
	switch k {
	case 0:
		leaf = clone(t, b.leaf, &b.pki.pckKey.PublicKey, b.ca, b.caKey, func(c *x509.Certificate) { c.NotAfter = b.at.Add(-time.Second) })
		v.desc = "PCK certificate notAfter 1 s before the time"
	case 1:
		leaf = clone(t, b.leaf, &b.pki.pckKey.PublicKey, b.ca, b.caKey, func(c *x509.Certificate) { c.NotBefore = b.at.Add(time.Second) })
		v.desc = "PCK certificate notBefore 1 s after the time"
	case 2:
		ca = clone(t, b.ca, &b.caKey.PublicKey, b.pki.root, b.pki.rootKey, func(c *x509.Certificate) { c.NotAfter = b.at.Add(-time.Second) })
		leaf = clone(t, b.leaf, &b.pki.pckKey.PublicKey, ca, b.caKey)
		v.desc = "PCK CA notAfter 1 s before the time"
	default:
		leaf = clone(t, b.leaf, &b.pki.pckKey.PublicKey, b.ca, b.caKey, func(c *x509.Certificate) { c.ExtraExtensions = nil })
		v.desc = "PCK certificate without the SGX extension"
	}
	v.quote = b.pki.resign(t, v.quote, chainPEM(b.nul, leaf, ca, b.pki.root), false)
}

// sweepJSON lists systematic edits of a signed JSON object: every
// tcbStatus set to every status (and an unknown one), every member of the
// object, of its tdxModule and of each TDX module identity deleted, every tcbLevels array reversed, its
// first level duplicated and dropped.
func sweepJSON(text, rootName string) (out [][2]string) {
	parse := func() any {
		d := json.NewDecoder(strings.NewReader(text))
		d.UseNumber()
		var doc any
		if d.Decode(&doc) != nil {
			return nil
		}
		return doc
	}
	emit := func(doc any, desc string) {
		b, err := json.Marshal(doc)
		if err == nil {
			out = append(out, [2]string{string(b), desc})
		}
	}
	var paths []jsonPath
	walkJSON(parse(), rootName, nil, "", -1, &paths)
	for i, p := range paths {
		switch {
		case p.key == "tcbStatus":
			for _, st := range tcbStatuses {
				doc := parse()
				var ps []jsonPath
				walkJSON(doc, rootName, nil, "", -1, &ps)
				ps[i].set(st)
				emit(doc, fmt.Sprintf("%s=%q", p.name, st))
			}
		case p.key == "tcbLevels":
			for _, op := range []string{"reverse", "duplicate first of", "drop first of"} {
				doc := parse()
				var ps []jsonPath
				walkJSON(doc, rootName, nil, "", -1, &ps)
				lv := slices.Clone(ps[i].value.([]any))
				switch {
				case op == "reverse":
					slices.Reverse(lv)
				case len(lv) == 0:
					continue
				case op == "drop first of":
					lv = lv[1:]
				default:
					lv = append([]any{deepCopy(lv[0])}, lv...)
				}
				ps[i].set(lv)
				emit(doc, op+" "+p.name)
			}
		}
		if _, inObj := p.parent.(map[string]any); inObj && (strings.Count(p.name, ".") == 1 || strings.HasPrefix(p.name, rootName+".tdxModule.") ||
			strings.HasPrefix(p.name, rootName+".tdxModuleIdentities[") && strings.Count(p.name, ".") == 2) {
			doc := parse()
			var ps []jsonPath
			walkJSON(doc, rootName, nil, "", -1, &ps)
			delete(ps[i].parent.(map[string]any), ps[i].key)
			emit(doc, "delete "+p.name)
		}
	}
	return out
}
