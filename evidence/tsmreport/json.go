package tsmreport

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// b64 is the blob encoding of Veraison's JSON form (its BinaryString):
// base64url without padding. Strict rejects non-zero trailing bits.
var b64 = base64.RawURLEncoding.Strict()

// jsonReport mirrors Veraison's field order so our output matches its
// writer byte for byte.
type jsonReport struct {
	AuxBlob         string `json:"auxblob,omitempty"`
	OutBlob         string `json:"outblob"`
	Provider        string `json:"provider"`
	ManifestBlob    string `json:"manifestblob,omitempty"`
	ServiceProvider string `json:"service_provider,omitempty"`
}

// EncodeJSON encodes r in Veraison's JSON form
// (application/vnd.veraison.tsm-report+json).
func (r *Report) EncodeJSON() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	out, err := json.Marshal(jsonReport{
		AuxBlob:         b64.EncodeToString(r.AuxBlob),
		OutBlob:         b64.EncodeToString(r.OutBlob),
		Provider:        r.Provider,
		ManifestBlob:    b64.EncodeToString(r.ManifestBlob),
		ServiceProvider: r.ServiceProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("tsmreport: encoding JSON: %w", err)
	}
	return out, nil
}

// parseJSON decodes the JSON form token by token, because encoding/json's
// Unmarshal lets a duplicate key silently override the first and turns
// null into "absent"; here both are errors, as are unknown keys and
// anything after the object.
func parseJSON(data []byte) (*Report, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("tsmreport: JSON: want an object: %w", jsonErr(err))
	}
	r := &Report{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("tsmreport: JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok { // encoding/json only yields string keys inside an object
			return nil, fmt.Errorf("tsmreport: JSON: key %v is not a string", tok)
		}
		if seen[key] {
			return nil, fmt.Errorf("tsmreport: JSON: duplicate key %q", key)
		}
		seen[key] = true
		var dst *[]byte
		var name *string
		switch key {
		case "provider":
			name = &r.Provider
		case "service_provider":
			name = &r.ServiceProvider
		case "outblob":
			dst = &r.OutBlob
		case "auxblob":
			dst = &r.AuxBlob
		case "manifestblob":
			dst = &r.ManifestBlob
		default:
			return nil, fmt.Errorf("tsmreport: JSON: unknown key %q", key)
		}
		s, err := jsonString(dec, key)
		if err != nil {
			return nil, err
		}
		if name != nil {
			*name = s
			continue
		}
		b, err := b64.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("tsmreport: JSON: %s is not base64url without padding: %w", key, err)
		}
		// The decoder skips CR and LF; insist on the one canonical
		// spelling so that a report has one JSON encoding.
		if b64.EncodeToString(b) != s {
			return nil, fmt.Errorf("tsmreport: JSON: %s is not canonical base64url", key)
		}
		if len(b) == 0 {
			b = nil
		}
		*dst = b
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fmt.Errorf("tsmreport: JSON: unterminated object: %w", jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("tsmreport: JSON: data after the object")
	}
	return r, nil
}

// jsonString reads the next value, which must be a JSON string (not null).
func jsonString(dec *json.Decoder, key string) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", fmt.Errorf("tsmreport: JSON: %s: %w", key, err)
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("tsmreport: JSON: %s is %v, want a string", key, tok)
	}
	if len(s) > MaxEncodedSize {
		return "", fmt.Errorf("tsmreport: JSON: %s too long", key)
	}
	return s, nil
}

// jsonErr gives a non-nil cause for messages where the token, not the
// decoder, was wrong.
func jsonErr(err error) error {
	if err == nil {
		return errors.New("unexpected token")
	}
	return err
}
