package pcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"unicode/utf8"
)

// readObject reads data as exactly one JSON object and returns the raw
// bytes of each member value. It is the one strict JSON reader of the
// package, used for bundles and for PCS response bodies:
//
//   - data must be valid UTF-8 (encoding/json would silently replace bad
//     bytes, changing signed text);
//   - every key must satisfy known, and no key may appear twice (parsers
//     disagree on which duplicate wins, so an attacker could show one value
//     to one tool and another to us);
//   - nothing but whitespace may follow the object.
//
// The returned values are copies of the exact input bytes (json.RawMessage
// copies what the decoder scanned, without surrounding whitespace); this is
// what keeps signed text byte-exact.
func readObject(data []byte, what string, known func(string) bool) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, malformed(what, "not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, malformed(what, "want a JSON object")
	}
	out := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonErr(what, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, malformed(what, "want an object key, got %v", tok)
		}
		if _, dup := out[key]; dup {
			return nil, malformed(what, "duplicate key %q", key)
		}
		if !known(key) {
			return nil, malformed(what, "unknown key %q", key)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, jsonErr(what, err)
		}
		out[key] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, jsonErr(what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed(what, "trailing data after the JSON object")
	}
	return out, nil
}

// jsonErr turns a decoder error into a Malformed error, naming truncation
// plainly because that is the common case (a cut-off download).
func jsonErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return malformedWrap(what, err, "truncated JSON")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return malformedWrap(what, err, "invalid JSON at byte %d", se.Offset)
	}
	return malformedWrap(what, err, "invalid JSON")
}

// jsonString decodes raw, which must be a JSON string.
func jsonString(field string, raw json.RawMessage) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", malformed(field, "want a JSON string")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", malformedWrap(field, err, "want a JSON string")
	}
	return s, nil
}
