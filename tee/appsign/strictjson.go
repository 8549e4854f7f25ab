package appsign

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The configuration and the signature file are signed or carry signed
// values, so they are read strictly: encoding/json on its own accepts
// duplicate keys (the last one wins), matches keys case-insensitively,
// treats null as "leave the field alone", and ignores unknown fields unless
// told otherwise. Any of those would let two readers (or a reader and a
// reviewer) see different values in the same file. decodeObject walks the
// members itself and rejects all four.

// errUnknownField is returned by a member callback for a key it does not
// know; decodeObject turns it into a message naming the key.
var errUnknownField = errors.New("unknown field")

// decodeStrictObject parses data as exactly one JSON object (trailing data
// rejected) and calls member for each key with its raw value, in order.
func decodeStrictObject(data []byte, member func(key string, raw json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := decodeObject(dec, member); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// decodeObject reads one object from dec. Keys must be unique and exactly
// as spelled by member (no case folding); null values are rejected.
func decodeObject(dec *json.Decoder, member func(key string, raw json.RawMessage) error) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("not a JSON object (starts with %v)", tok)
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("reading a key: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("want a key, got %v", tok)
		}
		if seen[key] {
			return fmt.Errorf("duplicate field %q", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
		if bytes.Equal(raw, []byte("null")) {
			return fmt.Errorf("field %q: null is not a value here", key)
		}
		if err := member(key, raw); err != nil {
			if errors.Is(err, errUnknownField) {
				return fmt.Errorf("unknown field %q", key)
			}
			return fmt.Errorf("field %q: %w", key, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return fmt.Errorf("unterminated object: %w", err)
	}
	return nil
}
