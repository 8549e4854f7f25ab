package akv

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
)

// APIVersions are the api-version values served: Azure's REST versions of
// the operations implemented (releaseKey from 7.3 on), and 2025-07-01,
// which @azure/keyvault-keys 4.10 sends by default.
var APIVersions = []string{"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01"}

// releaseVersions are the api-versions that have the release operation.
var releaseVersions = []string{"7.3", "7.4", "7.5", "7.6", "2025-07-01"}

// ServeHTTP serves the vault at the URL root, as Azure's vaults are:
//
//	POST /keys/NAME/create                 create a key (or a new version)
//	GET  /keys/NAME, /keys/NAME/           its newest version
//	GET  /keys/NAME/VERSION                that version
//	POST /keys/NAME[/VERSION]/release      release it to an attested environment
//
// Every request must first carry the bearer token: one without an
// Authorization header gets 401 with the WWW-Authenticate challenge
// (Bearer authorization="VAULT", resource="RESOURCE") before its body is
// read, as Azure's clients expect (they send their first request without
// a body and replay it with their token). Then api-version is checked.
// Errors have Azure's shape {"error": {"code", "message"}}.
func (v *Vault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !v.authorized(r) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s", resource="%s"`, v.cfg.VaultURL, v.resource))
		msg := "the request has no bearer token"
		if r.Header.Get("Authorization") != "" {
			msg = "the bearer token is not this vault's"
		}
		writeError(w, http.StatusUnauthorized, "Unauthorized", msg)
		return
	}
	api := r.URL.Query().Get("api-version")
	if !slices.Contains(APIVersions, api) {
		writeError(w, http.StatusBadRequest, "BadParameter",
			fmt.Sprintf("api-version %q is missing or not supported (supported: %s)", api, strings.Join(APIVersions, ", ")))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	switch {
	case len(parts) >= 2 && len(parts) <= 4 && parts[0] == "keys":
	default:
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no operation at %s (this vault serves /keys)", r.URL.Path))
		return
	}
	name := parts[1]
	var op, version string
	switch len(parts) {
	case 2: // /keys/NAME
		op = "get"
	case 3: // /keys/NAME/{create,release,VERSION,""}
		switch parts[2] {
		case "create", "release":
			op = parts[2]
		default:
			op, version = "get", parts[2]
		}
	case 4: // /keys/NAME/VERSION/release
		if parts[3] != "release" {
			writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no operation %q on a key version (this vault has release)", parts[3]))
			return
		}
		op, version = "release", parts[2]
	}
	want := map[string]string{"get": http.MethodGet, "create": http.MethodPost, "release": http.MethodPost}[op]
	if r.Method != want {
		w.Header().Set("Allow", want)
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", fmt.Sprintf("%s wants %s, not %s", op, want, r.Method))
		return
	}
	switch op {
	case "get":
		b, err := v.GetKey(r.Context(), name, version)
		v.respond(w, r, b, err)
	case "create":
		var req CreateKeyRequest
		if !readJSON(w, r, &req) {
			return
		}
		b, err := v.CreateKey(r.Context(), name, req)
		v.respond(w, r, b, err)
	case "release":
		if !slices.Contains(releaseVersions, api) {
			writeError(w, http.StatusBadRequest, "BadParameter", fmt.Sprintf("release needs api-version 7.3 or later, not %s", api))
			return
		}
		var req ReleaseRequest
		if !readJSON(w, r, &req) {
			return
		}
		value, err := v.Release(r.Context(), name, version, req, api)
		if err != nil {
			v.respond(w, r, nil, err)
			return
		}
		v.respond(w, r, map[string]string{"value": value}, nil)
	}
}

// authorized reports whether r carries the access token, comparing
// digests in constant time (no length or prefix leaks).
func (v *Vault) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return false
	}
	if tok == "" {
		return false
	}
	if v.cfg.AnyAccessToken {
		return true
	}
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], v.token[:]) == 1
}

// readJSON decodes the body strictly into dst: JSON of one object, no
// unknown or duplicate members (names matched case-sensitively, as the
// REST API spells them), nothing after it. It answers 4xx itself.
func readJSON(w http.ResponseWriter, r *http.Request, dst any) bool {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "BadParameter", fmt.Sprintf("request body over %d bytes", MaxBody))
			return false
		}
		writeError(w, http.StatusBadRequest, "BadParameter", "reading the request body: "+err.Error())
		return false
	}
	if len(body) == 0 {
		writeError(w, http.StatusBadRequest, "BadParameter", "the request has no body (want a JSON object)")
		return false
	}
	if err := jsonv2.Unmarshal(body, dst, jsonv2.RejectUnknownMembers(true)); err != nil {
		writeError(w, http.StatusBadRequest, "BadParameter", "the request body is not the JSON this operation takes: "+err.Error())
		return false
	}
	return true
}

func (v *Vault) respond(w http.ResponseWriter, r *http.Request, body any, err error) {
	if err == nil {
		b, err := json.Marshal(body)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", "encoding the response")
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(b)
		return
	}
	switch {
	case errors.Is(err, errBadParameter):
		writeError(w, http.StatusBadRequest, "BadParameter", err.Error())
	case errors.Is(err, ErrKeyNotFound):
		writeError(w, http.StatusNotFound, "KeyNotFound", err.Error())
	case errors.Is(err, ErrReleaseRefused):
		writeError(w, http.StatusForbidden, "Forbidden", err.Error())
	default:
		v.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "akv request failed", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		writeError(w, http.StatusInternalServerError, "InternalError", "the vault could not complete the request")
	}
}

// writeError writes Azure's error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
