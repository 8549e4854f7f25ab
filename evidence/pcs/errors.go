package pcs

import "github.com/cloister-dev/cloister/evidence/internal/verr"

// Format errors are verr.Errors with reason Malformed, so that package
// evidence can report a bad bundle with the same typed error as a bad quote.
// The Step is the field (bundle key, response or header) at fault, which
// gives messages such as
// "pcs: tcb_info_signature: want 128 hex characters, got 130".

// malformed returns a Malformed error for field.
func malformed(field, format string, args ...any) error {
	return verr.New("pcs", field, verr.Malformed, format, args...)
}

// malformedWrap returns a Malformed error for field around err.
func malformedWrap(field string, err error, format string, args ...any) error {
	return verr.Wrap("pcs", field, verr.Malformed, err, format, args...)
}
