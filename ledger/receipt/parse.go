package receipt

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Response is a receipt document as ACL's GET
// /app/transactions/{id}/receipt returns it, or a bare receipt (the inner
// "receipt" object alone, as Microsoft's guide and the SDKs pass it around),
// parsed but not verified: nothing in it is trusted until Verify returns.
type Response struct {
	Receipt Receipt
	// State and TransactionID are the response's own fields ("" for a bare receipt).
	State         string
	TransactionID string
	// ApplicationClaims are the claims newer API versions return beside the
	// receipt (nil when absent). Verify checks them only if the caller passes
	// them in Options.Claims.
	ApplicationClaims []Claim
}

// Receipt is the inner receipt object.
type Receipt struct {
	// NodeCert is the PEM certificate of the node that signed the root.
	NodeCert string
	// NodeID is the receipt's nodeId, nil when absent (it is optional in the reference).
	NodeID *[32]byte
	Leaf   LeafComponents
	Proof  []ProofStep
	// ServiceEndorsements are PEM certificates of previous service
	// identities, oldest first, each endorsed by the next and the last by
	// the current service certificate.
	ServiceEndorsements []string
	// Signature is the DER ECDSA signature over the Merkle root.
	Signature []byte
}

// LeafComponents are the parts hashed into the transaction's Merkle leaf.
type LeafComponents struct {
	WriteSetDigest [32]byte
	// CommitEvidence is hashed as its UTF-8 bytes, exactly as written.
	CommitEvidence string
	ClaimsDigest   [32]byte
}

// ProofStep is one element of the proof: the sibling digest and its side.
type ProofStep struct {
	// Left is true for {"left": h}: the sibling is on the left, parent = H(h ‖ cur).
	Left   bool
	Digest [32]byte
}

// obj is a JSON object's members, read with both of a field's spellings.
type obj struct {
	where   string
	members map[string]jsontext.Value
}

// parseObject decodes an object; go-json-experiment refuses duplicate member
// names and invalid UTF-8 by default, and matches names exactly.
func parseObject(where string, v jsontext.Value) (obj, error) {
	if v.Kind() != '{' {
		return obj{}, fail(StepParse, where, "want a JSON object, got %s", kindName(v))
	}
	m := map[string]jsontext.Value{}
	if err := json.Unmarshal(v, &m); err != nil {
		return obj{}, wrap(StepParse, where, err)
	}
	return obj{where: where, members: m}, nil
}

// get returns the member spelled camel or snake (snake may be ""), refusing both.
func (o obj) get(camel, snake string) (jsontext.Value, string, bool, error) {
	vc, okc := o.members[camel]
	vs, oks := jsontext.Value(nil), false
	if snake != "" {
		vs, oks = o.members[snake]
	}
	switch {
	case okc && oks:
		return nil, "", false, fail(StepParse, o.where, "both %q and %q are present", camel, snake)
	case okc:
		return vc, o.path(camel), true, nil
	case oks:
		return vs, o.path(snake), true, nil
	}
	return nil, o.path(camel), false, nil
}

func (o obj) path(name string) string {
	if o.where == "" {
		return name
	}
	return o.where + "." + name
}

// str returns the string member spelled camel or snake, and its path.
func (o obj) str(camel, snake string, required bool) (string, string, bool, error) {
	v, where, ok, err := o.get(camel, snake)
	if err != nil || !ok {
		if err == nil && required {
			err = fail(StepParse, where, "missing")
		}
		return "", where, false, err
	}
	if v.Kind() != '"' {
		return "", where, false, fail(StepParse, where, "want a string, got %s", kindName(v))
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", where, false, wrap(StepParse, where, err)
	}
	return s, where, true, nil
}

func (o obj) digest(camel, snake string) ([32]byte, error) {
	s, where, _, err := o.str(camel, snake, true)
	if err != nil {
		return [32]byte{}, err
	}
	return parseDigest(where, s)
}

func parseDigest(where, s string) ([32]byte, error) {
	var d [32]byte
	if len(s) != 64 {
		return d, fail(StepParse, where, "want 64 hex digits (a SHA-256 digest), got %d characters", len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fail(StepParse, where, "not hex: %v", err)
	}
	return d, nil
}

func kindName(v jsontext.Value) string {
	switch v.Kind() {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '0':
		return "a number"
	}
	return "something that is not JSON (or nothing)"
}

func array(where string, v jsontext.Value, max int) ([]jsontext.Value, error) {
	if v.Kind() != '[' {
		return nil, fail(StepParse, where, "want an array, got %s", kindName(v))
	}
	var items []jsontext.Value
	if err := json.Unmarshal(v, &items); err != nil {
		return nil, wrap(StepParse, where, err)
	}
	if len(items) > max {
		return nil, fail(StepParse, where, "%d elements, more than the %d allowed", len(items), max)
	}
	return items, nil
}

// Parse reads a receipt document: ACL's GET receipt response ({"receipt":
// {...}, "state", "transactionId"[, "applicationClaims"]}) or the bare
// receipt object. Field names are read in camelCase or in the snake_case older
// ACL versions wrote. Unknown members are ignored, as the reference does.
func Parse(data []byte) (*Response, error) {
	if len(data) > MaxReceiptSize {
		return nil, fail(StepParse, "", "%d bytes, more than the %d allowed", len(data), MaxReceiptSize)
	}
	top, err := parseObject("", jsontext.Value(data))
	if err != nil {
		return nil, err
	}
	resp := &Response{}
	inner, where, wrapped, err := top.get("receipt", "")
	if err != nil {
		return nil, err
	}
	if !wrapped {
		inner, where = jsontext.Value(data), ""
	} else {
		if resp.State, _, _, err = top.str("state", "", false); err != nil {
			return nil, err
		}
		if resp.TransactionID, _, _, err = top.str("transactionId", "", false); err != nil {
			return nil, err
		}
		if inner.Kind() == 'n' {
			return nil, fail(StepParse, where, "null: the receipt is not ready (state %q)", resp.State)
		}
		if v, cwhere, ok, err := top.get("applicationClaims", ""); err != nil {
			return nil, err
		} else if ok && v.Kind() != 'n' {
			if resp.ApplicationClaims, err = parseClaimsArray(cwhere, v); err != nil {
				return nil, err
			}
		}
	}
	r, err := parseReceipt(where, inner)
	if err != nil {
		return nil, err
	}
	resp.Receipt = *r
	return resp, nil
}

func parseReceipt(where string, v jsontext.Value) (*Receipt, error) {
	o, err := parseObject(where, v)
	if err != nil {
		return nil, err
	}
	r := &Receipt{}
	if r.NodeCert, _, _, err = o.str("cert", "", true); err != nil {
		return nil, err
	}
	if v, w, ok, err := o.get("isSignatureTransaction", "is_signature_transaction"); err != nil {
		return nil, err
	} else if ok {
		var b bool
		if v.Kind() != 't' && v.Kind() != 'f' {
			return nil, fail(StepParse, w, "want a boolean, got %s", kindName(v))
		}
		if json.Unmarshal(v, &b) == nil && b {
			return nil, fail(StepParse, w, "a signature transaction's receipt is not a write receipt (ACL refuses them)")
		}
	}
	// leafComponents
	lv, lwhere, ok, err := o.get("leafComponents", "leaf_components")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fail(StepParse, lwhere, "missing")
	}
	lo, err := parseObject(lwhere, lv)
	if err != nil {
		return nil, err
	}
	if r.Leaf.WriteSetDigest, err = lo.digest("writeSetDigest", "write_set_digest"); err != nil {
		return nil, err
	}
	ce, cewhere, _, err := lo.str("commitEvidence", "commit_evidence", true)
	if err != nil {
		return nil, err
	}
	r.Leaf.CommitEvidence = ce
	if len(r.Leaf.CommitEvidence) > MaxCommitEvidence {
		return nil, fail(StepParse, cewhere, "%d bytes, more than the %d allowed", len(r.Leaf.CommitEvidence), MaxCommitEvidence)
	}
	if r.Leaf.ClaimsDigest, err = lo.digest("claimsDigest", "claims_digest"); err != nil {
		return nil, err
	}
	// nodeId (optional; null is refused, as by the reference)
	if s, w, ok, err := o.str("nodeId", "node_id", false); err != nil {
		return nil, err
	} else if ok {
		id, err := parseDigest(w, s)
		if err != nil {
			return nil, err
		}
		r.NodeID = &id
	}
	// proof
	pv, pwhere, ok, err := o.get("proof", "")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fail(StepParse, pwhere, "missing")
	}
	items, err := array(pwhere, pv, MaxProofSteps)
	if err != nil {
		return nil, err
	}
	r.Proof = make([]ProofStep, len(items))
	for i, it := range items {
		if r.Proof[i], err = parseProofStep(fmt.Sprintf("%s[%d]", pwhere, i), it); err != nil {
			return nil, err
		}
	}
	// serviceEndorsements (optional; null is refused, as by the reference)
	if ev, ewhere, ok, err := o.get("serviceEndorsements", "service_endorsements"); err != nil {
		return nil, err
	} else if ok {
		items, err := array(ewhere, ev, MaxEndorsements)
		if err != nil {
			return nil, err
		}
		for i, it := range items {
			w := fmt.Sprintf("%s[%d]", ewhere, i)
			var s string
			if it.Kind() != '"' {
				return nil, fail(StepParse, w, "want a PEM string, got %s", kindName(it))
			}
			if err := json.Unmarshal(it, &s); err != nil {
				return nil, wrap(StepParse, w, err)
			}
			r.ServiceEndorsements = append(r.ServiceEndorsements, s)
		}
	}
	// signature
	sig, sigwhere, _, err := o.str("signature", "", true)
	if err != nil {
		return nil, err
	}
	if r.Signature, err = decodeBase64(sig); err != nil {
		return nil, wrap(StepParse, sigwhere, err)
	}
	return r, nil
}

// parseProofStep reads {"left": h} or {"right": h}: exactly one member, as
// the reference's ProofElement (any other member is an error there too).
func parseProofStep(where string, v jsontext.Value) (ProofStep, error) {
	o, err := parseObject(where, v)
	if err != nil {
		return ProofStep{}, err
	}
	if len(o.members) != 1 {
		return ProofStep{}, fail(StepParse, where, "want exactly one member, \"left\" or \"right\", got %d", len(o.members))
	}
	var st ProofStep
	var s string
	switch {
	case o.members["left"] != nil:
		st.Left = true
		s, _, _, err = o.str("left", "", true)
	case o.members["right"] != nil:
		s, _, _, err = o.str("right", "", true)
	default:
		for name := range o.members {
			return ProofStep{}, fail(StepParse, where, "unknown member %q: want \"left\" or \"right\"", name)
		}
	}
	if err != nil {
		return ProofStep{}, err
	}
	side := "right"
	if st.Left {
		side = "left"
	}
	st.Digest, err = parseDigest(o.path(side), s)
	return st, err
}

// decodeBase64 is Python's b64decode(s, validate=True): the standard
// alphabet with padding, nothing else (Go's decoder would skip line breaks).
func decodeBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("line break in base64")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not standard base64: %w", err)
	}
	return b, nil
}

// TransactionID returns the "VIEW.SEQNO" of a CCF commit evidence string
// "ce:VIEW.SEQNO:HEX", and false when it is not of that form.
func TransactionID(commitEvidence string) (string, bool) {
	rest, ok := strings.CutPrefix(commitEvidence, "ce:")
	if !ok {
		return "", false
	}
	txid, nonce, ok := strings.Cut(rest, ":")
	if !ok || nonce == "" || !validTxID(txid) {
		return "", false
	}
	if _, err := hex.DecodeString(nonce); err != nil {
		return "", false
	}
	return txid, true
}

// validTxID accepts "VIEW.SEQNO", two decimal numbers without sign or leading zeros.
func validTxID(s string) bool {
	view, seq, ok := strings.Cut(s, ".")
	return ok && decimal(view) && decimal(seq)
}

func decimal(s string) bool {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
