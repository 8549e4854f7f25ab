package tsmreport

import (
	"fmt"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// cborReport is the CBOR form. Veraison's encoder (fxamacker/cbor driven
// by the JSON tags of its TSMReport struct) writes text keys, byte-string
// blobs and a text-string provider; docs/tsm-report.cddl says bstr for the
// provider, so a byte string is accepted there too (ByteStringToString).
type cborReport struct {
	AuxBlob         []byte `cbor:"auxblob,omitempty"`
	OutBlob         []byte `cbor:"outblob,omitempty"`
	Provider        string `cbor:"provider,omitempty"`
	ManifestBlob    []byte `cbor:"manifestblob,omitempty"`
	ServiceProvider string `cbor:"service_provider,omitempty"`
}

// cborModes builds the codecs once. The decoder is strict: duplicate keys,
// unknown keys, indefinite lengths and tags are errors, names match
// case-sensitively, and nesting, map and array sizes are capped (limits.go);
// its Unmarshal also rejects trailing bytes. The encoder writes Core
// Deterministic Encoding (RFC 8949 §4.2.1), which orders these keys exactly
// as Veraison's struct does.
var cborModes = sync.OnceValues(func() (codecs, error) {
	dec, err := cbor.DecOptions{
		DupMapKey:          cbor.DupMapKeyEnforcedAPF,
		IndefLength:        cbor.IndefLengthForbidden,
		TagsMd:             cbor.TagsForbidden,
		ExtraReturnErrors:  cbor.ExtraDecErrorUnknownField,
		FieldNameMatching:  cbor.FieldNameMatchingCaseSensitive,
		ByteStringToString: cbor.ByteStringToStringAllowed,
		MaxNestedLevels:    maxCBORNesting,
		MaxMapPairs:        maxCBORMapPairs,
		MaxArrayElements:   maxCBORArrayElements,
	}.DecMode()
	if err != nil {
		return codecs{}, fmt.Errorf("tsmreport: CBOR decoder options: %w", err)
	}
	enc, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		return codecs{}, fmt.Errorf("tsmreport: CBOR encoder options: %w", err)
	}
	return codecs{dec: dec, enc: enc}, nil
})

// codecs holds the CBOR decoder and encoder modes.
type codecs struct {
	dec cbor.DecMode
	enc cbor.EncMode
}

// EncodeCBOR encodes r in Veraison's CBOR form
// (application/vnd.veraison.tsm-report+cbor), deterministically.
func (r *Report) EncodeCBOR() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	c, err := cborModes()
	if err != nil {
		return nil, err
	}
	out, err := c.enc.Marshal(cborReport{
		AuxBlob:         r.AuxBlob,
		OutBlob:         r.OutBlob,
		Provider:        r.Provider,
		ManifestBlob:    r.ManifestBlob,
		ServiceProvider: r.ServiceProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("tsmreport: encoding CBOR: %w", err)
	}
	return out, nil
}

// parseCBOR decodes the CBOR form; Parse has checked that data starts
// with a map.
func parseCBOR(data []byte) (*Report, error) {
	c, err := cborModes()
	if err != nil {
		return nil, err
	}
	var w cborReport
	if err := c.dec.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("tsmreport: CBOR: %w", err)
	}
	r := &Report{
		Provider:        w.Provider,
		OutBlob:         w.OutBlob,
		AuxBlob:         w.AuxBlob,
		ServiceProvider: w.ServiceProvider,
		ManifestBlob:    w.ManifestBlob,
	}
	// An empty byte string and an absent key mean the same; keep one form.
	for _, b := range []*[]byte{&r.AuxBlob, &r.ManifestBlob} {
		if len(*b) == 0 {
			*b = nil
		}
	}
	return r, nil
}
