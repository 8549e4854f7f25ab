// Package aclapi serves a ledger.Node over the Azure Confidential Ledger
// data-plane REST API (api-version 2022-05-13 and later), so Microsoft's
// clients (@azure-rest/confidential-ledger and the other SDKs) work
// against it unchanged:
//
//	POST   /app/transactions?collectionId=          create an entry
//	GET    /app/transactions?collectionId=&fromTransactionId=&toTransactionId=
//	GET    /app/transactions/current?collectionId=
//	GET    /app/transactions/{id}?collectionId=
//	GET    /app/transactions/{id}/receipt
//	GET    /app/transactions/{id}/status
//	GET    /app/collections
//	GET    /app/users/{id}  PATCH (merge-patch+json)  DELETE (204)
//
// and, for kv's trusted counters (not part of ACL's API; each user's
// counters are its own):
//
//	GET    /app/counters/{name}
//	POST   /app/counters/{name}   {"expectedVersion": n, "value": base64}
//
// Users are certificate users: the user id is the SHA-256 fingerprint of
// the client certificate's DER in uppercase colon hex, as ACL writes it.
// Administrators manage users; Contributors also write; Readers read.
// Errors are ACL's {"error": {"code", "message"}}.
package aclapi

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cloister-dev/cloister/ledger"
	"github.com/cloister-dev/cloister/ledger/replica"
)

// MinAPIVersion is the oldest api-version served.
const MinAPIVersion = "2022-05-13"

// DefaultCollection is ACL's collection when none is given.
const DefaultCollection = "subledger:0"

// maxBody caps request bodies: an entry's contents JSON-escaped, with room.
const maxBody = 6*ledger.MaxContents + 4096

// Ledger is what the API serves: a single ledger.Node, or one node of a
// replicated ledger (Replica). Reads answer from the node's own committed
// state; writes return once committed.
type Ledger interface {
	Append(ctx context.Context, collection, contents string) (ledger.TxID, error)
	SetUser(ctx context.Context, userID string, role ledger.Role) (ledger.TxID, error)
	CompareAndIncrement(ctx context.Context, name string, expect uint64, value []byte) (ledger.Record, error)
	Entry(tx ledger.TxID) (ledger.Record, error)
	Status(tx ledger.TxID) (committed bool, err error)
	Receipt(tx ledger.TxID) (*ledger.TransactionReceipt, bool, error)
	Current(collection string) (ledger.Record, error)
	List(collection string, from, to uint64) ([]ledger.Record, bool)
	Collections() []string
	User(id string) ledger.Role
	Counter(ctx context.Context, name string) (ledger.Record, error)
	View() uint64
	Durable() uint64
}

// Served is implemented by a Ledger that is one node of several: every
// response then names the node that made it (HeaderNodeID) and, on reads,
// the transaction its state had reached at least when it read
// (x-ms-ccf-transaction-id, as CCF sets it on reads).
type Served interface {
	ID() uint64
	Last() ledger.TxID
	Leader() uint64
}

// HeaderLeaderID names the leader the serving node knew (0: none known),
// for clients that prefer to write to the leader directly.
const HeaderLeaderID = "x-cloister-leader-id"

// HeaderNodeID names the node that served a response (a replicated ledger
// only).
const HeaderNodeID = "x-cloister-node-id"

// HeaderTxID is CCF's transaction id header: on a write the transaction
// written, on a read the last transaction the serving node had applied
// before it read (the read reflects at least that transaction).
const HeaderTxID = "x-ms-ccf-transaction-id"

// Handler returns the REST API over n.
func Handler(n Ledger) http.Handler {
	s := &server{n: n}
	s.sv, _ = n.(Served)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /app/transactions", s.auth(ledger.RoleContributor, s.create))
	mux.HandleFunc("GET /app/transactions", s.auth(ledger.RoleReader, s.list))
	mux.HandleFunc("GET /app/transactions/current", s.auth(ledger.RoleReader, s.current))
	mux.HandleFunc("GET /app/transactions/{id}", s.auth(ledger.RoleReader, s.entry))
	mux.HandleFunc("GET /app/transactions/{id}/receipt", s.auth(ledger.RoleReader, s.receipt))
	mux.HandleFunc("GET /app/transactions/{id}/status", s.auth(ledger.RoleReader, s.status))
	mux.HandleFunc("GET /app/collections", s.auth(ledger.RoleReader, s.collections))
	mux.HandleFunc("GET /app/users/{id}", s.auth(ledger.RoleAdministrator, s.getUser))
	mux.HandleFunc("PATCH /app/users/{id}", s.auth(ledger.RoleAdministrator, s.patchUser))
	mux.HandleFunc("DELETE /app/users/{id}", s.auth(ledger.RoleAdministrator, s.deleteUser))
	mux.HandleFunc("GET /app/counters/{name}", s.auth(ledger.RoleReader, s.getCounter))
	mux.HandleFunc("POST /app/counters/{name}", s.auth(ledger.RoleContributor, s.moveCounter))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("no %s %s in this API", r.Method, r.URL.Path))
	})
	return mux
}

type server struct {
	n  Ledger
	sv Served // nil for a single node
}

// served sets the serving node's headers before a read: what the read
// then sees is at or after the transaction named.
func (s *server) served(w http.ResponseWriter) {
	if s.sv == nil {
		return
	}
	w.Header().Set(HeaderNodeID, strconv.FormatUint(s.sv.ID(), 10))
	w.Header().Set(HeaderTxID, s.sv.Last().String())
}

// UserID is ACL's id of a certificate user: SHA-256 of the certificate's
// DER, uppercase hex bytes joined by ':'.
func UserID(certDER []byte) string {
	sum := sha256.Sum256(certDER)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// TLSConfig serves the node certificate with the service certificate
// above it (the chain ACL clients check against the service certificate
// they are given), and asks for a client certificate without verifying
// its chain: certificate users are self-signed, and are recognised by
// fingerprint in Handler.
func TLSConfig(id *ledger.Identity) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{id.NodeCert.Raw, id.ServiceCert.Raw},
			PrivateKey:  id.NodeKey,
			Leaf:        id.NodeCert,
		}},
		ClientAuth: tls.RequestClientCert,
		MinVersion: tls.VersionTLS12,
	}
}

var apiVersionRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview)?$`)

// validAPIVersion: a real date (not just its shape), MinAPIVersion or
// later, optionally "-preview".
func validAPIVersion(v string) bool {
	if !apiVersionRE.MatchString(v) {
		return false
	}
	if _, err := time.Parse(time.DateOnly, v[:10]); err != nil {
		return false
	}
	return v[:10] >= MinAPIVersion
}

// auth checks api-version and the caller's role, then calls h.
func (s *server) auth(need ledger.Role, h func(w http.ResponseWriter, r *http.Request, user string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, http.StatusBadRequest, "InvalidInput", "query: "+err.Error())
			return
		}
		switch v := q["api-version"]; {
		case len(v) == 0:
			writeError(w, http.StatusBadRequest, "MissingApiVersionParameter", "the api-version query parameter is required")
			return
		case len(v) > 1:
			writeError(w, http.StatusBadRequest, "InvalidInput", "api-version is given more than once")
			return
		case !validAPIVersion(v[0]):
			writeError(w, http.StatusBadRequest, "UnsupportedApiVersionValue", fmt.Sprintf("api-version %q: this ledger serves %s and later", v[0], MinAPIVersion))
			return
		}
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			writeError(w, http.StatusUnauthorized, "Unauthorized", "present a client certificate: this ledger has certificate users only")
			return
		}
		if s.sv != nil {
			w.Header().Set(HeaderNodeID, strconv.FormatUint(s.sv.ID(), 10))
			w.Header().Set(HeaderLeaderID, strconv.FormatUint(s.sv.Leader(), 10))
			if r.Method == http.MethodGet {
				s.served(w)
			}
		}
		user := UserID(r.TLS.PeerCertificates[0].Raw)
		role := s.n.User(user)
		if role == ledger.RoleNone || role > need {
			writeError(w, http.StatusForbidden, "Forbidden", fmt.Sprintf("user %s (%s) may not do this: it needs %s", user, role, need))
			return
		}
		h(w, r, user)
	}
}

// ErrorBody is ACL's error shape.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

// writeLedgerError maps ledger errors to statuses.
func writeLedgerError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		writeError(w, http.StatusNotFound, "ResourceNotFound", err.Error())
	case errors.Is(err, ledger.ErrBadTxID), errors.Is(err, ledger.ErrInvalid):
		writeError(w, http.StatusBadRequest, "InvalidInput", err.Error())
	case errors.Is(err, ledger.ErrCounterConflict):
		writeError(w, http.StatusConflict, "CounterConflict", err.Error())
	case errors.Is(err, replica.ErrNoLeader):
		// Nothing was acknowledged: the client retries, on any node.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "no leader is known now (an election is running or this node is cut off); retry")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the request ended before the ledger answered; a write may or may not have committed")
	case errors.Is(err, ledger.ErrStopped), errors.Is(err, replica.ErrStopped):
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the ledger node stopped; it must be restarted")
	default:
		writeError(w, http.StatusInternalServerError, "InternalError", "internal error")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"InternalError","message":"encoding"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// readJSON decodes a JSON body of the given media type into v.
func readJSON(w http.ResponseWriter, r *http.Request, mediaType string, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != mediaType {
			writeError(w, http.StatusUnsupportedMediaType, "InvalidInput", fmt.Sprintf("content type %q: want %s", ct, mediaType))
			return false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "InvalidInput", "body too large or unreadable")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidInput", "body: "+err.Error())
		return false
	}
	return true
}

func collection(r *http.Request) string {
	if c := r.URL.Query().Get("collectionId"); c != "" {
		return c
	}
	return DefaultCollection
}

// entryJSON is ACL's LedgerEntry.
type entryJSON struct {
	Contents      string `json:"contents"`
	CollectionID  string `json:"collectionId"`
	TransactionID string `json:"transactionId"`
}

func (s *server) entryOut(e ledger.Record) entryJSON {
	return entryJSON{Contents: e.Contents, CollectionID: e.Collection, TransactionID: ledger.TxID{View: s.n.View(), Seqno: e.Seqno}.String()}
}

func (s *server) create(w http.ResponseWriter, r *http.Request, _ string) {
	var in struct {
		Contents *string `json:"contents"`
	}
	if !readJSON(w, r, "application/json", &in) {
		return
	}
	if in.Contents == nil {
		writeError(w, http.StatusBadRequest, "InvalidInput", "body: contents is required")
		return
	}
	col := collection(r)
	tx, err := s.n.Append(r.Context(), col, *in.Contents)
	if err != nil {
		writeLedgerError(w, err)
		return
	}
	w.Header().Set(HeaderTxID, tx.String())
	writeJSON(w, http.StatusOK, map[string]string{"collectionId": col})
}

func (s *server) txid(w http.ResponseWriter, r *http.Request) (ledger.TxID, bool) {
	tx, err := ledger.ParseTxID(r.PathValue("id"))
	if err != nil {
		writeLedgerError(w, err)
		return tx, false
	}
	return tx, true
}

func (s *server) entry(w http.ResponseWriter, r *http.Request, _ string) {
	tx, ok := s.txid(w, r)
	if !ok {
		return
	}
	e, err := s.n.Entry(tx)
	if err == nil && e.Collection != collection(r) {
		err = fmt.Errorf("%w: transaction %s is not in collection %q", ledger.ErrNotFound, tx, collection(r))
	}
	if err != nil {
		writeLedgerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entry": s.entryOut(e), "state": "Ready"})
}

func (s *server) receipt(w http.ResponseWriter, r *http.Request, _ string) {
	tx, ok := s.txid(w, r)
	if !ok {
		return
	}
	tr, ready, err := s.n.Receipt(tx)
	if err != nil {
		writeLedgerError(w, err)
		return
	}
	if !ready {
		writeJSON(w, http.StatusOK, ledger.TransactionReceipt{State: "Loading", TransactionID: tx.String()})
		return
	}
	writeJSON(w, http.StatusOK, tr)
}

func (s *server) status(w http.ResponseWriter, r *http.Request, _ string) {
	tx, ok := s.txid(w, r)
	if !ok {
		return
	}
	committed, err := s.n.Status(tx)
	if err != nil {
		writeLedgerError(w, err)
		return
	}
	state := "Pending"
	if committed {
		state = "Committed"
	}
	writeJSON(w, http.StatusOK, map[string]string{"state": state, "transactionId": tx.String()})
}

func (s *server) current(w http.ResponseWriter, r *http.Request, _ string) {
	e, err := s.n.Current(collection(r))
	if err != nil {
		writeLedgerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.entryOut(e))
}

// list serves one page. The next page's link carries the same collection
// and an explicit toTransactionId (so paging is stable while entries are
// appended) but no api-version: the SDKs add it to every request.
func (s *server) list(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	col := collection(r)
	var from, to uint64
	for _, p := range []struct {
		name string
		dst  *uint64
	}{{"fromTransactionId", &from}, {"toTransactionId", &to}} {
		if v := q.Get(p.name); v != "" {
			tx, err := ledger.ParseTxID(v)
			if err == nil && tx.View != s.n.View() {
				// The seqno of another view's id names another
				// transaction here: refuse it rather than page from it.
				err = fmt.Errorf("%w: %s is not in view %d, this ledger's", ledger.ErrBadTxID, v, s.n.View())
			}
			if err != nil {
				writeError(w, http.StatusBadRequest, "InvalidInput", p.name+": "+err.Error())
				return
			}
			*p.dst = tx.Seqno
		}
	}
	if to != 0 && to < from {
		writeError(w, http.StatusBadRequest, "InvalidInput", fmt.Sprintf("toTransactionId %s is before fromTransactionId %s", q.Get("toTransactionId"), q.Get("fromTransactionId")))
		return
	}
	if to == 0 {
		to = s.n.Durable()
	}
	entries, more := s.n.List(col, from, to)
	out := make([]entryJSON, len(entries))
	for i, e := range entries {
		out[i] = s.entryOut(e)
	}
	body := map[string]any{"state": "Ready", "entries": out}
	if more {
		next := url.Values{}
		next.Set("collectionId", col)
		next.Set("fromTransactionId", ledger.TxID{View: s.n.View(), Seqno: entries[len(entries)-1].Seqno + 1}.String())
		next.Set("toTransactionId", ledger.TxID{View: s.n.View(), Seqno: to}.String())
		body["nextLink"] = "/app/transactions?" + next.Encode()
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *server) collections(w http.ResponseWriter, r *http.Request, _ string) {
	ids := s.n.Collections()
	out := make([]map[string]string, len(ids))
	for i, id := range ids {
		out[i] = map[string]string{"collectionId": id}
	}
	writeJSON(w, http.StatusOK, map[string]any{"collections": out})
}

func (s *server) getUser(w http.ResponseWriter, r *http.Request, _ string) {
	id := r.PathValue("id")
	role := s.n.User(id)
	if role == ledger.RoleNone {
		writeError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("user %s has no role", id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"assignedRole": role.String(), "userId": id})
}

func (s *server) patchUser(w http.ResponseWriter, r *http.Request, caller string) {
	id := r.PathValue("id")
	var in struct {
		AssignedRole string `json:"assignedRole"`
	}
	if !readJSON(w, r, "application/merge-patch+json", &in) {
		return
	}
	role := s.n.User(id)
	if in.AssignedRole != "" {
		var err error
		if role, err = ledger.ParseRole(in.AssignedRole); err != nil {
			writeLedgerError(w, err)
			return
		}
	}
	if role == ledger.RoleNone {
		writeError(w, http.StatusBadRequest, "InvalidInput", "a new user needs an assignedRole")
		return
	}
	if id == caller && role != ledger.RoleAdministrator {
		// As for DELETE: an administrator giving up its own role could
		// leave the ledger with no one to manage users.
		writeError(w, http.StatusBadRequest, "InvalidInput", "an administrator cannot demote itself")
		return
	}
	if _, err := s.n.SetUser(r.Context(), id, role); err != nil {
		writeLedgerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"assignedRole": role.String(), "userId": id})
}

func (s *server) deleteUser(w http.ResponseWriter, r *http.Request, caller string) {
	id := r.PathValue("id")
	if id == caller {
		writeError(w, http.StatusBadRequest, "InvalidInput", "an administrator cannot remove itself")
		return
	}
	if s.n.User(id) != ledger.RoleNone {
		if _, err := s.n.SetUser(r.Context(), id, ledger.RoleNone); err != nil {
			writeLedgerError(w, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// CounterJSON is a counter's state on the wire.
type CounterJSON struct {
	Name          string `json:"name"`
	Version       uint64 `json:"version"`
	Value         string `json:"value"` // base64
	TransactionID string `json:"transactionId,omitempty"`
}

// counterName is the ledger's name of the caller's counter: counters are
// per user (a counter guards its user's state, as kv's store counter
// does, so no other user may move it or read it), kept in the ledger as
// "USERID/NAME". Callers are certificate users, whose ids are fixed-length
// colon hex without '/', so the owner part is never ambiguous.
func counterName(user, name string) string { return user + "/" + name }

func (s *server) counterOut(name string, c ledger.Record) CounterJSON {
	out := CounterJSON{Name: name, Version: c.Version, Value: base64.StdEncoding.EncodeToString(c.Value)}
	if c.Seqno != 0 {
		out.TransactionID = ledger.TxID{View: s.n.View(), Seqno: c.Seqno}.String()
	}
	return out
}

func (s *server) getCounter(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("name")
	c, err := s.n.Counter(r.Context(), counterName(user, name))
	if err != nil {
		writeLedgerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.counterOut(name, c))
}

func (s *server) moveCounter(w http.ResponseWriter, r *http.Request, user string) {
	var in struct {
		ExpectedVersion *uint64 `json:"expectedVersion"`
		Value           string  `json:"value"`
	}
	if !readJSON(w, r, "application/json", &in) {
		return
	}
	v, err := base64.StdEncoding.DecodeString(in.Value)
	if in.ExpectedVersion == nil || err != nil {
		writeError(w, http.StatusBadRequest, "InvalidInput", "body: want expectedVersion and a base64 value")
		return
	}
	name := r.PathValue("name")
	c, err := s.n.CompareAndIncrement(r.Context(), counterName(user, name), *in.ExpectedVersion, v)
	if err != nil {
		writeLedgerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.counterOut(name, c))
}
