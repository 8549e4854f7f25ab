package attest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloister-dev/cloister/evidence"
	"github.com/cloister-dev/cloister/ratls"
)

// Keys of the shared state (relative to the store's namespace).
const (
	keyPolicy  = "policy/"  // + type: the policy document (JWS) as uploaded
	keySigners = "signers"  // the isolated mode's signer set (sharedSigner list)
	keyReplica = "replica/" // + replica id: leased, present while the replica is live
	keyApplied = "applied/" // + replica id: leased, the last revision it applied
	keyToken   = "key/"     // + kid: a published token key (sharedKey)
)

// DefaultReplicaTTL is the lease of a replica: it stops signing when it
// has not renewed it for this long, and the others stop counting it live.
const DefaultReplicaTTL = 5 * time.Second

// ErrFenced is why a replica that has lost its lease refuses to sign: its
// peers no longer wait for it to apply policy changes, so it might hold an
// outdated policy.
var ErrFenced = errors.New("attest: this replica has lost contact with the shared state; retry on another replica")

// sharedKey is a published token key as stored: its owner, its JWK (whose
// x5c every replica attests before publishing it) and, once its owner
// stopped signing with it, when it leaves /certs (Unix seconds, by the
// token clock).
type sharedKey struct {
	Owner   string          `json:"owner"`
	JWK     json.RawMessage `json:"jwk"`
	Expires int64           `json:"expires,omitempty"`
}

// sharedSigner is one policy signer as stored: the certificate and, unless
// the certificate is one of the replica's configured signers, the signed
// certificates:add request that added it.
type sharedSigner struct {
	Cert    []byte `json:"cert"`
	AddedBy string `json:"added_by,omitempty"`
}

// replica keeps a Service's view of the shared state and its place in it.
//
// Guarantees (tested in attest/etcdstate):
//   - A PUT/reset of a policy or a signer change returns only when every
//     live replica has applied it (or the request's deadline passed, and
//     the response says the change is stored but not yet confirmed).
//   - A replica signs only while its lease is valid by its own monotonic
//     clock (renewal sent + TTL, which ends no later than the store's
//     expiry): a replica that cannot renew it stops signing before its
//     peers stop waiting for it.
//   - /certs lists a peer's key only after attesting it: its x5c carries
//     RA-TLS evidence that verifies with this service's trust roots, binds
//     the key and names the same identity as this replica's own evidence.
//   - In isolated mode a policy from the store is used only if its JWS is
//     signed by a signer of the current set, and a signer is in the set
//     only if configured on this replica or added by a signed request of a
//     signer already in it.
type replica struct {
	s    *Service
	st   SharedState
	id   string
	ttl  time.Duration
	mono func() time.Time

	// validUntil is the monotonic deadline (UnixNano of mono) of the
	// lease; 0 while fenced.
	validUntil atomic.Int64
	base       time.Time // mono origin for validUntil

	mu       sync.Mutex
	lease    Lease
	recs     map[string]Record         // mirror of the shared state
	verified map[string]map[string]any // kid -> attested JWK (cache)
	rejected map[string]string         // kid -> why it was not published
	self     *evidence.Claims          // this replica's own verified identity
	peers    atomic.Pointer[[]byte]    // JWKS of peers' published keys (not ours)
	signers  atomic.Pointer[signerSnapshot]
	wake     chan struct{} // kicks the maintenance loop
	lastJoin int64         // revision of the first join's snapshot
	// appliedPolicy is, per type, the policy record's and the signer
	// set's revisions last installed; applyAll runs on one goroutine at a
	// time (the join, then the watch), so it needs no lock.
	appliedPolicy map[string][2]int64
}

type signerSnapshot struct {
	certs   []*x509.Certificate
	entries []sharedSigner
	modRev  int64
}

// newReplica joins the shared state: it registers under a fresh lease,
// publishes this replica's key, loads everything and acknowledges it.
// The background loops start in run.
func newReplica(ctx context.Context, s *Service, st SharedState, id string, ttl time.Duration) (*replica, error) {
	r := &replica{s: s, st: st, id: id, ttl: ttl, mono: time.Now, base: time.Now(),
		recs: map[string]Record{}, verified: map[string]map[string]any{}, rejected: map[string]string{},
		wake: make(chan struct{}, 1), appliedPolicy: map[string][2]int64{}}
	self, err := s.attestKey(ctx, s.ring.Load().current().jwk)
	if err != nil {
		return nil, fmt.Errorf("attest: replicas attest each other's keys, so this replica's own key must attest with its trust roots: %w", err)
	}
	r.self = self
	r.setSigners(s.cfg.PolicySigners, nil, 0)
	// Installed before joining: the join's snapshot publishes the peers'
	// keys through s.refreshJWKS, which reads s.rep. It cannot sign yet
	// (fenced until the join completes).
	s.rep = r
	if r.lastJoin, err = r.join(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *replica) now() int64 { return r.mono().Sub(r.base).Nanoseconds() + 1 }

// live reports whether this replica may sign now.
func (r *replica) live() bool {
	return r.now() < r.validUntil.Load()
}

// join (re)registers the replica: lease, registration, own keys, then a
// snapshot of everything, applied and acknowledged. It returns the
// snapshot's revision, from which the watch continues. The replica stays
// fenced until the acknowledgement is written.
func (r *replica) join(ctx context.Context) (int64, error) {
	r.validUntil.Store(0)
	t0 := r.now()
	lease, err := r.st.Grant(ctx, r.ttl)
	if err != nil {
		return 0, fmt.Errorf("attest: shared state: lease: %w", err)
	}
	// The join can outlast the lease (a loaded store, peers slow to
	// acknowledge): renew it meanwhile. The replica stays fenced until
	// the join is done, so these renewals do not let it sign.
	kctx, stopRenewing := context.WithCancel(ctx)
	var renewing sync.WaitGroup
	renewing.Go(func() {
		t := time.NewTicker(r.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-kctx.Done():
				return
			case <-t.C:
				_, _ = r.st.KeepAlive(kctx, lease)
			}
		}
	})
	defer func() { stopRenewing(); renewing.Wait() }()
	reg, _ := json.Marshal(map[string]string{"id": r.id, "issuer": r.s.cfg.Issuer})
	if _, err := r.st.PutLeased(ctx, lease, keyReplica+r.id, reg); err != nil {
		return 0, fmt.Errorf("attest: shared state: registering: %w", err)
	}
	keyRev, err := r.publishOwnKeys(ctx)
	if err != nil {
		return 0, err
	}
	recs, rev, err := r.st.Snapshot(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("attest: shared state: snapshot: %w", err)
	}
	r.mu.Lock()
	r.lease = lease
	r.recs = map[string]Record{}
	for _, rec := range recs {
		r.recs[rec.Key] = rec
	}
	r.mu.Unlock()
	r.applyAll(ctx)
	if err := r.ack(ctx, rev); err != nil {
		return 0, err
	}
	// Sign only once every live replica publishes this replica's key, so
	// that a token from any replica validates against any replica's /certs.
	if _, err := r.waitApplied(ctx, keyRev); err != nil {
		return 0, fmt.Errorf("attest: shared state: peers publishing this replica's key: %w", err)
	}
	r.validUntil.Store(t0 + r.ttl.Nanoseconds())
	return rev, nil
}

// ack records that this replica has applied everything up to rev.
func (r *replica) ack(ctx context.Context, rev int64) error {
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	if _, err := r.st.PutLeased(ctx, lease, keyApplied+r.id, []byte(strconv.FormatInt(rev, 10))); err != nil {
		return fmt.Errorf("attest: shared state: acknowledging revision %d: %w", rev, err)
	}
	return nil
}

// publishOwnKeys writes this replica's keys: the current one with no
// expiry, retired ones with the time their tokens have all expired. It
// returns the revision of the last write.
func (r *replica) publishOwnKeys(ctx context.Context) (int64, error) {
	return r.publishKeys(ctx, r.s.ring.Load().keys)
}

func (r *replica) publishKeys(ctx context.Context, keys []*signingKey) (int64, error) {
	var last int64
	for _, k := range keys {
		rec := sharedKey{Owner: r.id}
		if !k.retired.IsZero() {
			rec.Expires = k.retired.Add(TokenLifetime + keyGrace).Unix()
		}
		var err error
		if rec.JWK, err = json.Marshal(k.jwk); err != nil {
			return 0, fmt.Errorf("attest: %w", err)
		}
		b, _ := json.Marshal(rec)
		if last, err = r.st.Put(ctx, keyToken+k.kid, b, -1); err != nil {
			return 0, fmt.Errorf("attest: shared state: publishing key %s: %w", k.kid, err)
		}
	}
	return last, nil
}

// run keeps the lease, follows the shared state and maintains the
// published keys until ctx ends; then it revokes the lease when it can (a
// replica that stops cleanly leaves at once instead of after its TTL).
func (r *replica) run(ctx context.Context, rev int64) {
	var wg sync.WaitGroup
	wg.Go(func() { r.keepAlive(ctx) })
	wg.Go(func() { r.follow(ctx, rev) })
	wg.Wait()
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	rctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.st.Revoke(rctx, lease)
}

// keepAlive renews the lease every third of its TTL. The new deadline is
// counted from before the renewal was sent, so it ends no later than the
// store's. When the lease is lost the replica is fenced and rejoins.
func (r *replica) keepAlive(ctx context.Context) {
	t := time.NewTicker(r.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.validUntil.Store(0)
			return
		case <-t.C:
		}
		if r.validUntil.Load() == 0 {
			r.kick() // fenced: a join under way renews its own lease; else this starts one
			continue
		}
		r.mu.Lock()
		lease := r.lease
		r.mu.Unlock()
		t0 := r.now()
		kctx, cancel := context.WithTimeout(ctx, r.ttl/2)
		ttl, err := r.st.KeepAlive(kctx, lease)
		cancel()
		switch {
		case err == nil:
			// Only extend, and never out of a fence (0: a rejoin under
			// way sets it when done): a compare-and-swap, so a fence set
			// meanwhile is not overwritten.
			if old, d := r.validUntil.Load(), t0+min(ttl, r.ttl).Nanoseconds(); old != 0 && d > old {
				r.validUntil.CompareAndSwap(old, d)
			}
		case errors.Is(err, ErrLeaseLost):
			r.validUntil.Store(0)
			r.s.log.LogAttrs(ctx, slog.LevelWarn, "replica lease lost; rejoining", slog.String("replica", r.id))
			r.kick()
		default:
			r.s.log.LogAttrs(ctx, slog.LevelWarn, "replica lease renewal failed", slog.String("replica", r.id), slog.String("error", err.Error()))
		}
		r.kick() // refresh published keys (expiry is by time)
	}
}

func (r *replica) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// follow applies the store's changes after rev, acknowledging each
// revision that changed a policy or the signers; when the watch breaks or
// the lease was lost it rejoins (snapshot, new watch).
func (r *replica) follow(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			// Maintenance: on a kick, rejoin if fenced, else refresh keys.
			for {
				select {
				case <-wctx.Done():
					return
				case <-r.wake:
				}
				if r.validUntil.Load() == 0 {
					cancel() // the watch ends; the loop below rejoins
					return
				}
				r.maintainKeys(wctx)
			}
		})
		err := r.st.Watch(wctx, "", rev, func(at int64, changes []Record) error {
			ackNeeded := false
			r.mu.Lock()
			for _, c := range changes {
				if c.Deleted {
					delete(r.recs, c.Key)
				} else {
					r.recs[c.Key] = c
				}
				if strings.HasPrefix(c.Key, keyPolicy) || c.Key == keySigners || strings.HasPrefix(c.Key, keyToken) {
					ackNeeded = true
				}
			}
			r.mu.Unlock()
			r.applyAll(wctx)
			rev = at
			if ackNeeded {
				return r.ack(wctx, at)
			}
			return nil
		})
		cancel()
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			r.s.log.LogAttrs(ctx, slog.LevelWarn, "shared state watch ended; rejoining", slog.String("replica", r.id), slog.String("error", err.Error()))
		}
		// Rejoin until it works: fenced meanwhile, so nothing is signed
		// with a view that may be stale.
		for ctx.Err() == nil {
			jctx, jcancel := context.WithTimeout(ctx, max(r.s.cfg.Timeout, 2*r.ttl))
			next, err := r.join(jctx)
			jcancel()
			if err == nil {
				rev = next
				break
			}
			r.s.log.LogAttrs(ctx, slog.LevelWarn, "rejoining the shared state failed", slog.String("replica", r.id), slog.String("error", err.Error()))
			select {
			case <-ctx.Done():
			case <-time.After(r.ttl / 5):
			}
		}
	}
}

// applyAll rebuilds the signer set, the policies and the peers' keys from
// the mirror.
func (r *replica) applyAll(ctx context.Context) {
	r.mu.Lock()
	recs := make(map[string]Record, len(r.recs))
	for k, v := range r.recs {
		recs[k] = v
	}
	r.mu.Unlock()
	r.applySigners(ctx, recs[keySigners])
	signersRev := r.signers.Load().modRev
	for _, t := range types {
		rec, ok := recs[keyPolicy+t]
		// Most changes are acknowledgements and keys: a policy is
		// compiled again only when it or the signer set changed.
		if applied, seen := r.appliedPolicy[t]; seen && applied == [2]int64{rec.ModRev, signersRev} {
			continue
		}
		r.appliedPolicy[t] = [2]int64{rec.ModRev, signersRev}
		if !ok {
			r.s.policies.install(t, nil)
			continue
		}
		c, err := r.usablePolicy(ctx, string(rec.Value))
		if err != nil {
			r.s.log.LogAttrs(ctx, slog.LevelError, "policy in the shared state refused", slog.String("type", t), slog.String("error", err.Error()))
			c = &compiled{unavailable: err.Error()}
		}
		r.s.policies.install(t, c)
	}
	r.publishPeers(ctx, recs)
}

// usablePolicy checks a stored policy document as an upload is checked:
// signed by a current signer in isolated mode, and valid.
func (r *replica) usablePolicy(ctx context.Context, jws string) (*compiled, error) {
	text, signer, err := parsePolicyJWS(jws)
	if err != nil {
		return nil, err
	}
	if sn := r.signers.Load(); len(sn.certs) > 0 && !signerAllowed(signer, sn.certs) {
		return nil, errors.New("isolated mode: the stored policy is not signed by a policy signer of the current set")
	}
	c, err := compilePolicy(ctx, text)
	if err != nil {
		return nil, err
	}
	c.jws, c.signer = strings.TrimSpace(jws), signer
	return c, nil
}

// applySigners validates the stored signer set (see sharedSigner): each
// entry is a configured signer or was added by a signed request of an
// entry accepted before it. Entries that fail are dropped; an empty result
// falls back to the configured signers, so isolated mode cannot be turned
// off from the store.
func (r *replica) applySigners(ctx context.Context, rec Record) {
	configured := r.s.cfg.PolicySigners
	if rec.Key == "" || len(configured) == 0 {
		r.setSigners(configured, nil, rec.ModRev)
		return
	}
	var entries []sharedSigner
	if err := json.Unmarshal(rec.Value, &entries); err != nil {
		r.s.log.LogAttrs(ctx, slog.LevelError, "policy signers in the shared state refused", slog.String("error", err.Error()))
		r.setSigners(configured, nil, rec.ModRev)
		return
	}
	var accepted []*x509.Certificate
	var kept []sharedSigner
	for i, e := range entries {
		c, err := x509.ParseCertificate(e.Cert)
		if err != nil {
			r.s.log.LogAttrs(ctx, slog.LevelError, "policy signer in the shared state refused", slog.Int("entry", i), slog.String("error", err.Error()))
			continue
		}
		if !slices.ContainsFunc(configured, func(k *x509.Certificate) bool { return bytes.Equal(k.Raw, c.Raw) }) {
			if err := checkAddedBy(e.AddedBy, c, accepted); err != nil {
				r.s.log.LogAttrs(ctx, slog.LevelError, "policy signer in the shared state refused", slog.Int("entry", i), slog.String("error", err.Error()))
				continue
			}
		}
		accepted = append(accepted, c)
		kept = append(kept, e)
	}
	if len(accepted) == 0 {
		accepted, kept = configured, nil
	}
	r.setSigners(accepted, kept, rec.ModRev)
}

// checkAddedBy checks that jws is a certificates:add request for c signed
// by one of by.
func checkAddedBy(jws string, c *x509.Certificate, by []*x509.Certificate) error {
	if jws == "" {
		return errors.New("not a configured signer, and no signed request added it")
	}
	payload, signer, err := readJWS(jws, "stored certificates:add request")
	if err != nil {
		return err
	}
	if !signerAllowed(signer, by) {
		return errors.New("the request that added it is not signed by a signer accepted before it")
	}
	want, err := requestedCertificate(payload)
	if err != nil {
		return err
	}
	if !bytes.Equal(want.Raw, c.Raw) {
		return errors.New("the request that added it names another certificate")
	}
	return nil
}

func (r *replica) setSigners(certs []*x509.Certificate, entries []sharedSigner, modRev int64) {
	if entries == nil {
		for _, c := range certs {
			entries = append(entries, sharedSigner{Cert: c.Raw})
		}
	}
	r.signers.Store(&signerSnapshot{certs: slices.Clone(certs), entries: entries, modRev: modRev})
}

// changeSigner adds or removes c (added by the signed request jws) in the
// shared set, conditional on the set this replica last saw.
func (r *replica) changeSigner(ctx context.Context, c *x509.Certificate, add bool, jws string) (changed bool, rev int64, err error) {
	sn := r.signers.Load()
	idx := slices.IndexFunc(sn.certs, func(k *x509.Certificate) bool { return bytes.Equal(k.Raw, c.Raw) })
	next := slices.Clone(sn.entries)
	switch {
	case add && idx >= 0, !add && idx < 0:
		return false, 0, nil
	case add:
		next = append(next, sharedSigner{Cert: c.Raw, AddedBy: jws})
	case len(sn.certs) == 1:
		return false, 0, errLastSigner
	default:
		next = slices.Delete(next, idx, idx+1)
	}
	b, err := json.Marshal(next)
	if err != nil {
		return false, 0, fmt.Errorf("attest: %w", err)
	}
	rev, err = r.st.Put(ctx, keySigners, b, sn.modRev)
	if err != nil {
		return false, 0, err
	}
	return true, rev, nil
}

// putPolicy stores a policy document (empty: reset to the default).
func (r *replica) putPolicy(ctx context.Context, typ, jws string) (int64, error) {
	if jws == "" {
		return r.st.Delete(ctx, keyPolicy+typ, -1)
	}
	return r.st.Put(ctx, keyPolicy+typ, []byte(jws), -1)
}

// waitApplied returns when every live replica has acknowledged rev (a
// replica whose lease ends stops counting: it stopped signing before).
// On ctx's end it returns the replicas still pending.
func (r *replica) waitApplied(ctx context.Context, rev int64) (int, error) {
	for {
		recs, at, err := r.st.Snapshot(ctx, "")
		if err != nil {
			return 0, err
		}
		live, applied := map[string]bool{}, map[string]int64{}
		for _, rec := range recs {
			if id, ok := strings.CutPrefix(rec.Key, keyReplica); ok {
				live[id] = true
			}
			if id, ok := strings.CutPrefix(rec.Key, keyApplied); ok {
				applied[id], _ = strconv.ParseInt(string(rec.Value), 10, 64)
			}
		}
		var pending []string
		for id := range live {
			if applied[id] < rev {
				pending = append(pending, id)
			}
		}
		if len(pending) == 0 {
			return len(live), nil
		}
		errNext := errors.New("next")
		werr := r.st.Watch(ctx, "", at, func(int64, []Record) error { return errNext })
		if ctx.Err() != nil {
			slices.Sort(pending)
			return 0, fmt.Errorf("replicas %s have not acknowledged revision %d: %w", strings.Join(pending, ", "), rev, ctx.Err())
		}
		if werr != nil && !errors.Is(werr, errNext) {
			return 0, werr
		}
	}
}

// maintainKeys re-publishes peers' keys (expiry is by time) and marks the
// keys of replicas that are no longer live as retired: from now, their
// tokens all expire within TokenLifetime (a replica stops signing before
// its registration disappears), so the key stays that long plus keyGrace.
// Keys past their expiry are deleted. Every write is conditional, so
// replicas doing the same at once do not conflict.
func (r *replica) maintainKeys(ctx context.Context) {
	r.mu.Lock()
	recs := make(map[string]Record, len(r.recs))
	for k, v := range r.recs {
		recs[k] = v
	}
	r.mu.Unlock()
	now := r.s.cfg.Now()
	for k, rec := range recs {
		if !strings.HasPrefix(k, keyToken) {
			continue
		}
		var sk sharedKey
		if json.Unmarshal(rec.Value, &sk) != nil {
			continue
		}
		switch {
		case sk.Owner == r.id:
		case sk.Expires == 0 && !hasKey(recs, keyReplica+sk.Owner):
			sk.Expires = now.Add(TokenLifetime + keyGrace).Unix()
			b, _ := json.Marshal(sk)
			_, _ = r.st.Put(ctx, k, b, rec.ModRev)
		case sk.Expires != 0 && now.Unix() >= sk.Expires:
			_, _ = r.st.Delete(ctx, k, rec.ModRev)
		}
	}
	r.publishPeers(ctx, recs)
}

func hasKey(recs map[string]Record, k string) bool { _, ok := recs[k]; return ok }

// publishPeers recomputes the peers' part of /certs: keys of other
// replicas that are live or not yet expired, each attested first.
func (r *replica) publishPeers(ctx context.Context, recs map[string]Record) {
	now := r.s.cfg.Now().Unix()
	own := map[string]bool{}
	for _, k := range r.s.ring.Load().keys {
		own[k.kid] = true
	}
	var keys []any
	for _, k := range slices.Sorted(mapsKeys(recs)) {
		kid, ok := strings.CutPrefix(k, keyToken)
		if !ok || own[kid] {
			continue
		}
		var sk sharedKey
		if err := json.Unmarshal(recs[k].Value, &sk); err != nil {
			continue
		}
		if sk.Expires != 0 && now >= sk.Expires {
			continue
		}
		jwk, err := r.attestedJWK(ctx, kid, sk.JWK)
		if err != nil {
			continue
		}
		keys = append(keys, jwk)
	}
	b, _ := json.Marshal(keys)
	r.peers.Store(&b)
	r.s.refreshJWKS()
}

func mapsKeys(m map[string]Record) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// attestedJWK returns the JWK of a peer key after attesting it (cached by
// kid: the kid is the hash of the key, and the JWK is rebuilt from the
// attested certificate, so no stored member other than x5c is used).
func (r *replica) attestedJWK(ctx context.Context, kid string, raw json.RawMessage) (map[string]any, error) {
	r.mu.Lock()
	jwk, ok := r.verified[kid]
	r.mu.Unlock()
	if ok {
		return jwk, nil
	}
	var in map[string]any
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, err
	}
	claims, err := r.s.attestKey(ctx, in)
	if err == nil {
		err = sameIdentity(r.self, claims)
	}
	if err == nil && in["kid"] != kid {
		err = fmt.Errorf("stored under kid %s but names %v", kid, in["kid"])
	}
	if err != nil {
		r.mu.Lock()
		first := r.rejected[kid] == ""
		r.rejected[kid] = err.Error()
		r.mu.Unlock()
		if first {
			r.s.log.LogAttrs(ctx, slog.LevelError, "peer token key refused", slog.String("kid", kid), slog.String("error", err.Error()))
		}
		return nil, err
	}
	certs, _ := jwkCerts(in)
	alg, _ := in["alg"].(string)
	switch certs[0].PublicKey.(type) {
	case *rsa.PublicKey:
		err = map[bool]error{true: nil, false: fmt.Errorf("alg %q for an RSA key", alg)}[alg == "RS256"]
	case *ecdsa.PublicKey:
		err = map[bool]error{true: nil, false: fmt.Errorf("alg %q for an EC key", alg)}[alg == "ES256"]
	}
	if err == nil {
		jwk, err = keyJWK(kid, alg, certs[0].PublicKey, in["x5c"])
	}
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.verified[kid] = jwk
	r.mu.Unlock()
	return jwk, nil
}

// jwkCerts parses a JWK's x5c: [signing certificate, RA-TLS certificate].
func jwkCerts(jwk map[string]any) ([]*x509.Certificate, error) {
	arr, _ := jwk["x5c"].([]any)
	var x5c []string
	for _, v := range arr {
		s, _ := v.(string)
		x5c = append(x5c, s)
	}
	if raw, ok := jwk["x5c"].([]string); ok {
		x5c = raw
	}
	certs, err := ParseX5C(x5c)
	if err != nil {
		return nil, err
	}
	if len(certs) != 2 {
		return nil, fmt.Errorf("x5c has %d certificates, want the signing certificate and its RA-TLS certificate", len(certs))
	}
	return certs, nil
}

// attestKey verifies a token key's JWK as a relying party does: the
// RA-TLS certificate (x5c[1]) carries evidence that verifies with the
// service's trust roots and binds the certificate's key, its CCC claims
// name SHA-256 of the signing key, which the RA-TLS key certified
// (x5c[0]), and kid is that hash. It returns the evidence's claims. TCB
// status and identity are not appraised here (the caller compares
// identities).
func (s *Service) attestKey(ctx context.Context, jwk map[string]any) (*evidence.Claims, error) {
	certs, err := jwkCerts(jwk)
	if err != nil {
		return nil, err
	}
	leaf, ra := certs[0], certs[1]
	if err := ra.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		return nil, fmt.Errorf("signing certificate not certified by the RA-TLS key: %w", err)
	}
	res, err := ratls.Verify(ctx, ra, ratls.VerifyOptions{SkipAppraisal: true, SkipTCBEvaluation: true,
		Now: s.cfg.Now, TrustRoots: s.dcapRoots})
	if err != nil {
		return nil, fmt.Errorf("RA-TLS evidence: %w", err)
	}
	ev, err := ratls.ParseCertificate(ra)
	if err != nil || res.Form != ratls.FormCCC {
		return nil, errors.New("the RA-TLS certificate carries no CCC claims buffer binding a token key")
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	if got := ev.UnverifiedClaims["cloister-token-key"]; !bytes.Equal(got, sum[:]) {
		return nil, fmt.Errorf("the evidence binds token key %x, but the signing certificate's key hashes to %x", got, sum)
	}
	if kid, _ := jwk["kid"].(string); kid != base64.RawURLEncoding.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("kid %q is not the signing key's hash", kid)
	}
	return res.Claims, nil
}

// sameIdentity checks that a peer's evidence names this replica's
// identity: TEE kind and measurements (and for SGX signer and product).
func sameIdentity(self, peer *evidence.Claims) error {
	type id struct {
		tee  string
		meas []string
	}
	of := func(c *evidence.Claims) id {
		v := id{tee: c.TEE}
		switch {
		case c.SGXClaims != nil:
			v.meas = []string{hex.EncodeToString(c.MRENCLAVE), hex.EncodeToString(c.MRSIGNER), strconv.Itoa(int(c.ISVProdID))}
		case c.TDXClaims != nil:
			v.meas = []string{hex.EncodeToString(c.MRTD), hex.EncodeToString(c.RTMR0), hex.EncodeToString(c.RTMR1), hex.EncodeToString(c.RTMR2)}
		case c.SNPClaims != nil:
			v.meas = []string{hex.EncodeToString(c.Measurement)}
		}
		return v
	}
	a, b := of(self), of(peer)
	if a.tee != b.tee || !slices.Equal(a.meas, b.meas) || len(a.meas) == 0 {
		return fmt.Errorf("the key's evidence names another identity (%s %v) than this replica's (%s %v)", b.tee, b.meas, a.tee, a.meas)
	}
	return nil
}
