package boundary

import (
	"fmt"
	"slices"
)

// This file is the declared boundary, the analog of an SGX EDL file: every
// call that may cross between the enclave and the host, with its id, name,
// payload shapes and bounds. A Server only serves calls listed in its Table
// and a Client only sends calls listed in its Table; both check the bounds
// on every frame. Applications declare their own calls the same way, with
// ids at or above AppCallBase, and build a Table with NewTable.
//
// Call ids cross the boundary: Do NOT renumber, and never reuse a retired id.
// Shapes are little-endian; "bytes" means the rest of the payload; host/
// owns the codecs and must stay within these bounds.

// Host-service call ids. Grouped by service in the second byte.
const (
	// Network (TCP; TLS stays inside the enclave). Handles are u64 chosen by the host.
	CallNetListen uint32 = 0x0101 // req: addr bytes → resp: u64 listener | bound addr bytes
	CallNetAccept uint32 = 0x0102 // req: u64 listener → resp: u64 conn | remote addr bytes
	CallNetDial   uint32 = 0x0103 // req: u64 timeout ns | addr bytes → resp: u64 conn | local addr bytes
	CallNetRead   uint32 = 0x0104 // req: u64 conn | u32 max | u64 offset → resp: data bytes from offset (empty at EOF)
	CallNetWrite  uint32 = 0x0105 // req: u64 conn | data bytes → resp: u32 written
	CallNetClose  uint32 = 0x0106 // req: u64 handle → resp: empty

	// Storage of opaque sealed records (the host never sees plaintext).
	CallStorageGet    uint32 = 0x0201 // req: key bytes → resp: record bytes
	CallStoragePut    uint32 = 0x0202 // req: u16 key len | key | record → resp: empty
	CallStorageDelete uint32 = 0x0203 // req: key bytes → resp: empty
	CallStorageList   uint32 = 0x0204 // req: u16 prefix len | prefix | start-after key → resp: (u16 len | key)*
	// storage.commit applies a batch of puts and deletes atomically (one
	// bbolt transaction): kv's commit is durable all or nothing.
	CallStorageCommit uint32 = 0x0205 // req: u32 count | count × (u8 op | u16 key len | key | u32 value len | value) → resp: empty

	// Time from the host: UNTRUSTED, for logs and timeouts only, never for
	// validity decisions.
	CallTimeNowUntrusted uint32 = 0x0301 // req: empty → resp: u64 unix ns

	// Evidence collection where the platform needs the host (quoting).
	CallEvidenceQuote uint32 = 0x0401 // req: platform-specific (report / target info) → resp: evidence bytes

	// Simulator platform: what the host measured, and sealing keys. On the
	// simulator the host holds the sim keys, as the quoting enclave sits
	// outside the app enclave on SGX; on hardware these calls are not served.
	CallSimIdentity uint32 = 0x0410 // req: empty → resp: u8 len | kind | u8 len | measurement | u8 len | signer | u16 product | u16 svn | u8 debug
	CallSimSealKey  uint32 = 0x0411 // req: u8 policy | kdf context → resp: key bytes
)

// CallCancel is not a call but a control frame on a request ring, as
// io_uring's ASYNC_CANCEL: header {call: CallCancel, id: the id of an
// earlier request on the same channel}, empty payload, and no response.
// The enclave sends it when a caller gave up on a request (its context
// ended); the host then drops that request's reply if it is still pending
// (deferred), frees its slot and reserved response space, and tells the
// handler through Reply.Done. A reply already written is dropped by the
// enclave as stale. No Table may declare this id.
const CallCancel uint32 = 0x0000_0001

// Call id ranges.
const (
	// AppCallBase is the first id an application may use for its own calls.
	// Ids below it are reserved for Cloister's host services.
	AppCallBase uint32 = 0x0001_0000
	// MaxCallID is the largest valid call id. The top bit of a response's
	// call field is ErrorFlag.
	MaxCallID uint32 = 0x7FFF_FFFF
	// ErrorFlag marks an error response: the response frame's call field is
	// the request's call id | ErrorFlag and its payload is
	// [u32 code][u32 message length][message].
	ErrorFlag uint32 = 0x8000_0000
)

// CallSpec declares one call: its id, a name for logs and errors, the
// request and response shapes (documentation for codec writers), and the
// bounds enforced on every frame of this call.
type CallSpec struct {
	ID          uint32
	Name        string
	Request     string // payload shape of the request
	Response    string // payload shape of the response
	MaxRequest  int    // bytes; at most MaxFramePayload
	MaxResponse int    // bytes; at most MaxFramePayload
	// MayBlock marks a call the host may hold until an outside event (a
	// network read waiting for data). The enclave lets such calls take at
	// most a share of each channel's slots (Client), so that calls that
	// are answered promptly always find a slot and reserved response
	// space, however many connections sit idle.
	MayBlock bool
	// MaxDeferredResponse, if not zero, bounds the payload of a reply the
	// host defers (answers through a Reply), which may then be smaller
	// than MaxResponse; the host reserves response space for this bound
	// only. A call held long (MayBlock) keeps little space this way.
	MaxDeferredResponse int
}

// deferredMax is the largest payload of a deferred reply to s.
func (s CallSpec) deferredMax() int {
	if s.MaxDeferredResponse > 0 {
		return min(s.MaxDeferredResponse, s.MaxResponse)
	}
	return s.MaxResponse
}

// hostCalls is the table of host services. Order is documentation only.
var hostCalls = [...]CallSpec{
	{CallNetListen, "net.listen", "addr bytes", "u64 listener | addr bytes", MaxNetAddr, 8 + MaxNetAddr, false, 0},
	{CallNetAccept, "net.accept", "u64 listener", "u64 conn | addr bytes", 8, 8 + MaxNetAddr, true, 0},
	{CallNetDial, "net.dial", "u64 timeout ns | addr bytes", "u64 conn | addr bytes", 8 + MaxNetAddr, 8 + MaxNetAddr, false, 0},
	{CallNetRead, "net.read", "u64 conn | u32 max | u64 offset", "data bytes", 20, MaxNetReadChunk, true, MaxNetHeldRead},
	{CallNetWrite, "net.write", "u64 conn | data bytes", "u32 written", 8 + MaxNetChunk, 4, true, 0},
	{CallNetClose, "net.close", "u64 handle", "empty", 8, 0, false, 0},
	{CallStorageGet, "storage.get", "key bytes", "record bytes", MaxStorageKey, MaxStorageValue, false, 0},
	{CallStoragePut, "storage.put", "u16 key len | key | record", "empty", 2 + MaxStorageKey + MaxStorageValue, 0, false, 0},
	{CallStorageDelete, "storage.delete", "key bytes", "empty", MaxStorageKey, 0, false, 0},
	{CallStorageList, "storage.list", "u16 prefix len | prefix | start-after key", "(u16 len | key)*", 2 + 2*MaxStorageKey, MaxStorageList, false, 0},
	{CallStorageCommit, "storage.commit", "u32 count | count × (u8 op | u16 key len | key | u32 value len | value)", "empty", MaxStorageCommit, 0, false, 0},
	{CallTimeNowUntrusted, "time.now_untrusted", "empty", "u64 unix ns (UNTRUSTED)", 0, 8, false, 0},
	{CallEvidenceQuote, "evidence.quote", "platform-specific request", "evidence bytes", MaxEvidenceRequest, MaxEvidence, false, 0},
	{CallSimIdentity, "sim.identity", "empty", "u8 len | kind | u8 len | measurement | u8 len | signer | u16 product | u16 svn | u8 debug", 0, maxSimIdentity, false, 0},
	{CallSimSealKey, "sim.seal_key", "u8 policy | kdf context", "key bytes", 1 + 256, 64, false, 0},
}

// MaxStorageCommit bounds one storage.commit request: every record of one
// kv commit plus its state record, which alone may be MaxStorageValue. It
// stays below the default ring size so the call fits the default rings.
const MaxStorageCommit = 768 << 10

// maxSimIdentity bounds an encoded sim identity: kind, measurement and
// signer with one-byte lengths, product, SVN and debug.
const maxSimIdentity = 3 + 3*255 + 5

// HostCalls returns the host-service call declarations (a copy).
func HostCalls() []CallSpec { return slices.Clone(hostCalls[:]) }

// Table is an immutable set of declared calls, looked up by id on every
// frame. Build one with NewTable; it is safe for concurrent use.
type Table struct {
	byID  map[uint32]CallSpec
	specs []CallSpec // sorted by id

	maxReq, maxResp int // largest bounds, to size buffers and check rings
}

// NewTable checks specs (ids in 1..MaxCallID and unique, non-empty unique
// names, bounds within 0..MaxFramePayload) and returns a Table. To serve
// the host services plus an app's calls, pass
// append(boundary.HostCalls(), appCalls...).
func NewTable(specs ...CallSpec) (*Table, error) {
	t := &Table{byID: make(map[uint32]CallSpec, len(specs))}
	names := make(map[string]uint32, len(specs))
	for _, s := range specs {
		if s.ID == 0 || s.ID == CallCancel || s.ID > MaxCallID {
			return nil, fmt.Errorf("boundary: new table: call %q: id %#x outside 2..%#x (1 is CallCancel)", s.Name, s.ID, MaxCallID)
		}
		if s.Name == "" {
			return nil, fmt.Errorf("boundary: new table: call %#x: empty name", s.ID)
		}
		if prev, dup := t.byID[s.ID]; dup {
			return nil, fmt.Errorf("boundary: new table: id %#x declared twice (%q and %q)", s.ID, prev.Name, s.Name)
		}
		if prev, dup := names[s.Name]; dup {
			return nil, fmt.Errorf("boundary: new table: name %q declared twice (%#x and %#x)", s.Name, prev, s.ID)
		}
		if s.MaxRequest < 0 || s.MaxRequest > MaxFramePayload || s.MaxResponse < 0 || s.MaxResponse > MaxFramePayload {
			return nil, fmt.Errorf("boundary: new table: call %q: bounds %d/%d outside 0..%d", s.Name, s.MaxRequest, s.MaxResponse, MaxFramePayload)
		}
		if s.MaxDeferredResponse < 0 || s.MaxDeferredResponse > s.MaxResponse {
			return nil, fmt.Errorf("boundary: new table: call %q: deferred response bound %d outside 0..%d", s.Name, s.MaxDeferredResponse, s.MaxResponse)
		}
		t.byID[s.ID] = s
		names[s.Name] = s.ID
		t.specs = append(t.specs, s)
		t.maxReq = max(t.maxReq, s.MaxRequest)
		t.maxResp = max(t.maxResp, s.MaxResponse)
	}
	slices.SortFunc(t.specs, func(a, b CallSpec) int { return int(int64(a.ID) - int64(b.ID)) })
	return t, nil
}

// Lookup returns the declaration of call id.
func (t *Table) Lookup(id uint32) (CallSpec, bool) {
	s, ok := t.byID[id]
	return s, ok
}

// Specs returns the declarations sorted by id (a copy).
func (t *Table) Specs() []CallSpec { return slices.Clone(t.specs) }

// checkRings reports whether every call's largest request and response
// frame (an error response included) fits the region's rings, so that a
// declared call can never be refused for size by the ring itself.
func (t *Table) checkRings(cfg Config) error {
	for _, s := range t.specs {
		if frameSize(s.MaxRequest) > cfg.RequestRingSize {
			return fmt.Errorf("%w: call %q: request frame %d bytes exceeds request ring %d", ErrConfig, s.Name, frameSize(s.MaxRequest), cfg.RequestRingSize)
		}
		if frameSize(max(s.MaxResponse, maxErrorPayload)) > cfg.ResponseRingSize {
			return fmt.Errorf("%w: call %q: response frame %d bytes exceeds response ring %d", ErrConfig, s.Name, frameSize(max(s.MaxResponse, maxErrorPayload)), cfg.ResponseRingSize)
		}
	}
	return nil
}

// blockCap is how many calls that may block (MayBlock) a client lets be
// in flight on one channel of a region with cfg: at most
// MaxPendingPerChannel - minPromptSlots, and few enough that the response
// space the host reserves for them (the largest such reply each) leaves
// room for the largest prompt call's reservation and its answer, so the
// host never stops taking a channel's requests because idle connections
// hold its space. At least 1.
func (t *Table) blockCap(cfg Config) int {
	var blockMax, promptMax int
	for _, s := range t.specs {
		if s.MayBlock {
			blockMax = max(blockMax, s.deferredMax())
		} else {
			promptMax = max(promptMax, s.MaxResponse)
		}
	}
	room := int64(cfg.ResponseRingSize) - int64(reservation(promptMax)) - int64(frameSize(max(promptMax, maxErrorPayload)))
	n := int(room / int64(reservation(blockMax)))
	return min(max(n, 1), MaxPendingPerChannel-minPromptSlots)
}

// name returns the declared name of id, or its hex form, for messages.
func (t *Table) name(id uint32) string {
	if s, ok := t.byID[id]; ok {
		return s.Name
	}
	return fmt.Sprintf("%#x", id)
}
