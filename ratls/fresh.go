package ratls

import (
	"bytes"
	"context"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cloister-dev/cloister/evidence"
)

// Freshness beyond the certificate (DESIGN.md "Attested TLS"): inside an
// established session the client sends a nonce; the server answers with new
// evidence whose report_data is
//
//	SHA-512(TLS exporter(ExporterLabel, no context, 32 bytes) ‖ nonce)
//
// Only the two endpoints of this session know the exporter value, so the
// answer cannot have been made for, or replayed from, another session, and
// the nonce makes it new.
const (
	// ExporterLabel is the TLS exporter label of the challenge.
	ExporterLabel = "EXPORTER-cloister-attestation"
	// ChallengePath is where ChallengeHandler is served: the client POSTs
	// the raw nonce (16 to 64 bytes) and receives the raw evidence
	// (application/octet-stream).
	ChallengePath = "/.well-known/cloister/attestation"
)

// FreshReportData is the report_data of a challenge answer for the session
// cs and the client's nonce. Both sides compute it the same way.
func FreshReportData(cs *tls.ConnectionState, nonce []byte) ([64]byte, error) {
	var rd [64]byte
	if cs == nil {
		return rd, errors.New("ratls: challenge: not a TLS connection")
	}
	if cs.Version != tls.VersionTLS13 {
		return rd, fmt.Errorf("ratls: challenge: TLS version %#04x, want TLS 1.3", cs.Version)
	}
	if len(nonce) < minNonceSize || len(nonce) > maxNonceSize {
		return rd, fmt.Errorf("ratls: challenge: nonce of %d bytes, want %d..%d", len(nonce), minNonceSize, maxNonceSize)
	}
	ekm, err := cs.ExportKeyingMaterial(ExporterLabel, nil, exporterSize)
	if err != nil {
		return rd, fmt.Errorf("ratls: challenge: exporter: %w", err)
	}
	h := sha512.New()
	h.Write(ekm)
	h.Write(nonce)
	copy(rd[:], h.Sum(nil))
	return rd, nil
}

// Answer returns evidence for a challenge on the session cs.
func (s *Server) Answer(ctx context.Context, cs *tls.ConnectionState, nonce []byte) ([]byte, error) {
	rd, err := FreshReportData(cs, nonce)
	if err != nil {
		return nil, err
	}
	ev, err := s.opts.Platform.Evidence(ctx, rd)
	if err != nil {
		return nil, fmt.Errorf("ratls: challenge: evidence: %w", err)
	}
	return ev, nil
}

// ChallengeHandler answers challenges at ChallengePath. Mount it on the
// HTTPS server that uses this Server's certificates:
//
//	mux.Handle(ratls.ChallengePath, srv.ChallengeHandler())
func (s *Server) ChallengeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "ratls: challenge: POST the nonce", http.StatusMethodNotAllowed)
			return
		}
		nonce, err := io.ReadAll(io.LimitReader(r.Body, maxChallengeBody+1))
		if err != nil {
			http.Error(w, "ratls: challenge: reading nonce", http.StatusBadRequest)
			return
		}
		ev, err := s.Answer(r.Context(), r.TLS, nonce)
		if err != nil {
			// The message names the request's mistake (size, not TLS 1.3);
			// it contains nothing secret.
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(ev)
	})
}

// VerifyFresh checks a challenge answer raw for nonce on the session cs:
// the evidence verifies, its report_data is FreshReportData(cs, nonce), it
// satisfies the policy, and it comes from the same identity (TEE kind and
// measurements) as the peer certificate of cs.
func (v *Verifier) VerifyFresh(ctx context.Context, cs *tls.ConnectionState, nonce, raw []byte) (*evidence.Claims, error) {
	want, err := FreshReportData(cs, nonce)
	if err != nil {
		return nil, err
	}
	if len(cs.PeerCertificates) == 0 {
		return nil, malformed("challenge", "session has no peer certificate")
	}
	peer, err := v.Verify(ctx, cs.PeerCertificates[0])
	if err != nil {
		return nil, err
	}
	claims, _, err := v.verifyEvidence(ctx, raw, v.opts.Now())
	if err != nil {
		return nil, fmt.Errorf("ratls: challenge evidence: %w", err)
	}
	if !bytes.Equal(claims.ReportData, want[:]) {
		return nil, verifyErr("challenge", evidence.BadBinding, ErrStale,
			"report_data %s, want SHA-512(exporter ‖ nonce) %s", hex.EncodeToString(claims.ReportData), hex.EncodeToString(want[:]))
	}
	if err := v.appraise(claims); err != nil {
		return nil, err
	}
	if err := sameIdentity(peer.Claims, claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// sameIdentity checks that fresh evidence comes from the code the
// certificate attested, not merely from code the policy also accepts.
func sameIdentity(cert, fresh *evidence.Claims) error {
	if diffs := identityDiffs(cert, fresh); len(diffs) > 0 {
		return verifyErr("challenge", evidence.BadBinding, nil, "fresh evidence is from another identity than the certificate: %s", strings.Join(diffs, "; "))
	}
	return nil
}

// identityDiffs lists how the identities (TEE kind, measurements and, for
// SGX, signer and product) of two verified claims differ; empty when they
// are the same.
func identityDiffs(cert, fresh *evidence.Claims) []string {
	var diffs []string
	if cert.TEE != fresh.TEE {
		diffs = append(diffs, fmt.Sprintf("tee %q vs %q", cert.TEE, fresh.TEE))
	}
	eq := func(name string, a, b evidence.HexBytes) {
		if !bytes.Equal(a, b) {
			diffs = append(diffs, fmt.Sprintf("%s %s vs %s", name, a, b))
		}
	}
	switch {
	case cert.SGXClaims != nil && fresh.SGXClaims != nil:
		eq("mrenclave", cert.MRENCLAVE, fresh.MRENCLAVE)
		eq("mrsigner", cert.MRSIGNER, fresh.MRSIGNER)
		// A policy names a signer's product as an identity, so one
		// signer's two products are two identities, even with one
		// MRENCLAVE (two SIGSTRUCTs over the same code).
		if cert.ISVProdID != fresh.ISVProdID {
			diffs = append(diffs, fmt.Sprintf("isv_prod_id %d vs %d", cert.ISVProdID, fresh.ISVProdID))
		}
	case cert.TDXClaims != nil && fresh.TDXClaims != nil:
		eq("mrtd", cert.MRTD, fresh.MRTD)
		eq("rtmr0", cert.RTMR0, fresh.RTMR0)
		eq("rtmr1", cert.RTMR1, fresh.RTMR1)
		eq("rtmr2", cert.RTMR2, fresh.RTMR2)
	case cert.SNPClaims != nil && fresh.SNPClaims != nil:
		eq("measurement", cert.Measurement, fresh.Measurement)
	default:
		diffs = append(diffs, "different evidence kinds")
	}
	return diffs
}

// Challenge runs the freshness challenge against baseURL (https://host:port)
// with client, whose transport must use this Verifier's ClientConfig. It
// returns the verified claims of the fresh evidence.
func (v *Verifier) Challenge(ctx context.Context, client *http.Client, baseURL string) (*evidence.Claims, error) {
	nonce := make([]byte, 32)
	if _, err := io.ReadFull(v.opts.Rand, nonce); err != nil {
		return nil, fmt.Errorf("ratls: challenge: nonce: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(baseURL, "/")+ChallengePath, bytes.NewReader(nonce))
	if err != nil {
		return nil, fmt.Errorf("ratls: challenge: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ratls: challenge: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxChallengeResp+1))
	if err != nil {
		return nil, fmt.Errorf("ratls: challenge: reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ratls: challenge: server answered %s: %s", resp.Status, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	if len(body) > maxChallengeResp {
		return nil, fmt.Errorf("ratls: challenge: answer larger than %d bytes", maxChallengeResp)
	}
	// resp.TLS is the state of the connection that carried this exchange,
	// so the exporter value is the one the server used.
	return v.VerifyFresh(ctx, resp.TLS, nonce, body)
}
