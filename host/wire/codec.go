package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

// Codecs of the host-service calls. Shapes follow boundary/calls.go; the
// conventions it leaves open are fixed here:
//
//   - Network handles are u64 chosen by the host, small integers from 1 up;
//     0 is never a handle.
//   - net.dial is asynchronous, like connect(2) with EINPROGRESS: it answers
//     at once with the new handle and an empty address; net.accept on that
//     handle then completes the dial, answering the same handle and the
//     local address or the dial's error once the dial is done.
//   - net.accept, net.read and net.write (boundary.CallSpec.MayBlock) are
//     held by the host (deferred) until they can proceed; the enclave waits
//     for the reply with its deadline and cancels with a cancel frame.
//     net.read names the stream offset the enclave has consumed: the host
//     drops what precedes it and answers from there, keeping the bytes it
//     answers until a later read's offset passes them, so a reply the
//     enclave gave up on is sent again. It answers an empty payload only
//     at EOF, and net.write at least one byte written. A host without
//     Defer installed answers the would-block status
//     (boundary.CodeWouldBlock) instead of waiting; the SDK treats that as
//     a failure.
//   - storage.get answers the not-found status (boundary.CodeNotFound) for a missing key; storage.list pages
//     end with an empty page.

// errShort is the one decoding failure: the payload is not what its call
// declares.
var errShort = errors.New("wire: malformed payload")

func malformed(what string) error { return fmt.Errorf("%w: %s", errShort, what) }

// AppendU64 appends v little-endian.
func AppendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// HandleAddr is the u64 handle | address bytes shape (listen, accept, dial
// responses).
func HandleAddr(b []byte, h uint64, addr string) ([]byte, error) {
	if len(addr) > boundary.MaxNetAddr {
		return nil, malformed("address too long")
	}
	return append(AppendU64(b, h), addr...), nil
}

// ParseHandleAddr decodes HandleAddr; the handle must be non-zero.
func ParseHandleAddr(b []byte) (uint64, string, error) {
	if len(b) < 8 || len(b) > 8+boundary.MaxNetAddr {
		return 0, "", malformed("handle and address")
	}
	h := binary.LittleEndian.Uint64(b)
	if h == 0 {
		return 0, "", malformed("zero handle")
	}
	return h, string(b[8:]), nil
}

// ParseHandle decodes a request that is exactly one u64 handle (accept,
// close).
func ParseHandle(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, malformed("handle")
	}
	return binary.LittleEndian.Uint64(b), nil
}

// ParseRead decodes a net.read request: u64 conn | u32 max | u64 offset.
// The offset is how many bytes of the connection's stream the enclave has
// consumed: the host drops what precedes it and answers from there, so a
// reply the enclave gave up on (deadline) is not lost but sent again.
func ParseRead(b []byte) (h uint64, max int, off uint64, err error) {
	if len(b) != ReadRequestSize {
		return 0, 0, 0, malformed("read request")
	}
	return binary.LittleEndian.Uint64(b), int(binary.LittleEndian.Uint32(b[8:])), binary.LittleEndian.Uint64(b[12:]), nil
}

// ReadRequestSize is the size of a net.read request.
const ReadRequestSize = 20

// ReadRequest encodes a net.read request into b (ReadRequestSize bytes).
func ReadRequest(b []byte, h uint64, max int, off uint64) []byte {
	b = AppendU64(b[:0], h)
	b = binary.LittleEndian.AppendUint32(b, uint32(max))
	return AppendU64(b, off)
}

// ParseWritten decodes a net.write response: u32 written, which must be in
// 1..sent.
func ParseWritten(b []byte, sent int) (int, error) {
	if len(b) != 4 {
		return 0, malformed("write response")
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 || int64(n) > int64(sent) {
		return 0, malformed(fmt.Sprintf("write response: %d of %d bytes", n, sent))
	}
	return int(n), nil
}

// ParseDial decodes a net.dial request: u64 timeout ns | addr.
func ParseDial(b []byte) (uint64, string, error) {
	if len(b) < 8 || len(b) > 8+boundary.MaxNetAddr {
		return 0, "", malformed("dial request")
	}
	return binary.LittleEndian.Uint64(b), string(b[8:]), nil
}

// KeyRecord encodes a storage.put request: u16 key len | key | record.
func KeyRecord(key, record []byte) ([]byte, error) {
	if len(key) == 0 || len(key) > boundary.MaxStorageKey || len(record) > boundary.MaxStorageValue {
		return nil, malformed("key or record size")
	}
	b := binary.LittleEndian.AppendUint16(make([]byte, 0, 2+len(key)+len(record)), uint16(len(key)))
	return append(append(b, key...), record...), nil
}

// ParseKeyRecord decodes KeyRecord. The slices alias b.
func ParseKeyRecord(b []byte) (key, record []byte, err error) {
	if len(b) < 2 {
		return nil, nil, malformed("put request")
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n == 0 || n > boundary.MaxStorageKey || 2+n > len(b) {
		return nil, nil, malformed("put request key")
	}
	return b[2 : 2+n], b[2+n:], nil
}

// ListRequest encodes a storage.list request: u16 prefix len | prefix |
// start-after key.
func ListRequest(prefix, after []byte) ([]byte, error) {
	if len(prefix) > boundary.MaxStorageKey || len(after) > boundary.MaxStorageKey {
		return nil, malformed("list request")
	}
	b := binary.LittleEndian.AppendUint16(nil, uint16(len(prefix)))
	return append(append(b, prefix...), after...), nil
}

// ParseListRequest decodes ListRequest. The slices alias b.
func ParseListRequest(b []byte) (prefix, after []byte, err error) {
	if len(b) < 2 {
		return nil, nil, malformed("list request")
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n > boundary.MaxStorageKey || 2+n > len(b) || len(b)-2-n > boundary.MaxStorageKey {
		return nil, nil, malformed("list request prefix")
	}
	return b[2 : 2+n], b[2+n:], nil
}

// AppendListKey appends one key to a list page, or reports that it does
// not fit within max bytes.
func AppendListKey(page, key []byte, max int) ([]byte, bool) {
	if len(key) == 0 || len(key) > boundary.MaxStorageKey || len(page)+2+len(key) > max {
		return page, false
	}
	return append(binary.LittleEndian.AppendUint16(page, uint16(len(key))), key...), true
}

// ParseListPage decodes a list page into fresh strings; every key must be
// non-empty, carry prefix, sort after the previous one and after after.
func ParseListPage(b, prefix, after []byte) ([][]byte, error) {
	var keys [][]byte
	prev := after
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, malformed("list page")
		}
		n := int(binary.LittleEndian.Uint16(b))
		if n == 0 || n > boundary.MaxStorageKey || 2+n > len(b) {
			return nil, malformed("list page key")
		}
		k := append([]byte(nil), b[2:2+n]...)
		if len(k) < len(prefix) || string(k[:len(prefix)]) != string(prefix) || string(k) <= string(prev) {
			return nil, malformed("list page order")
		}
		keys = append(keys, k)
		prev = k
		b = b[2+n:]
	}
	return keys, nil
}

// EncodeIdentity encodes the simulator's running identity (sim.identity
// response).
func EncodeIdentity(b []byte, kind tee.Kind, id tee.Identity) ([]byte, error) {
	if len(kind) > 255 || len(id.Measurement) > 255 || len(id.Signer) > 255 {
		return nil, malformed("identity field too long")
	}
	b = append(append(b, byte(len(kind))), kind...)
	b = append(append(b, byte(len(id.Measurement))), id.Measurement...)
	b = append(append(b, byte(len(id.Signer))), id.Signer...)
	b = binary.LittleEndian.AppendUint16(b, id.ProductID)
	b = binary.LittleEndian.AppendUint16(b, id.SVN)
	d := byte(0)
	if id.Debug {
		d = 1
	}
	return append(b, d), nil
}

// ParseIdentity decodes EncodeIdentity into fresh slices.
func ParseIdentity(b []byte) (tee.Kind, tee.Identity, error) {
	var fields [3][]byte
	for i := range fields {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return "", tee.Identity{}, malformed("identity")
		}
		fields[i] = append([]byte(nil), b[1:1+int(b[0])]...)
		b = b[1+int(b[0]):]
	}
	if len(b) != 5 || b[4] > 1 || len(fields[0]) == 0 || len(fields[1]) == 0 {
		return "", tee.Identity{}, malformed("identity tail")
	}
	id := tee.Identity{Measurement: fields[1], Signer: fields[2], ProductID: binary.LittleEndian.Uint16(b), SVN: binary.LittleEndian.Uint16(b[2:]), Debug: b[4] == 1}
	if len(id.Signer) == 0 {
		id.Signer = nil
	}
	return tee.Kind(fields[0]), id, nil
}

// SealKeyRequest encodes a sim.seal_key request: u8 policy | kdf context
// (seal.KeyRequest.Context, the bytes the key is bound to).
func SealKeyRequest(req seal.KeyRequest) ([]byte, error) {
	c := req.Context()
	if c == nil || len(c) > seal.MaxKDFContextSize {
		return nil, malformed("seal key request")
	}
	return append([]byte{byte(req.Policy)}, c...), nil
}

// ParseSealKeyRequest decodes SealKeyRequest into a seal.KeyRequest. The
// signer context is signer ‖ product (u16 big-endian) ‖ SVN (u16
// big-endian), as seal.KeyRequest.Context writes it.
func ParseSealKeyRequest(b []byte) (seal.KeyRequest, error) {
	if len(b) < 2 || len(b) > 1+seal.MaxKDFContextSize {
		return seal.KeyRequest{}, malformed("seal key request")
	}
	p, c := seal.Policy(b[0]), b[1:]
	switch p {
	case seal.PolicyEnclave:
		if len(c) > seal.MaxMeasurementSize {
			return seal.KeyRequest{}, malformed("seal key measurement")
		}
		return seal.KeyRequest{Policy: p, Measurement: append([]byte(nil), c...)}, nil
	case seal.PolicySigner:
		n := len(c) - 4
		if n < 1 || n > seal.MaxSignerSize {
			return seal.KeyRequest{}, malformed("seal key signer")
		}
		return seal.KeyRequest{Policy: p, Signer: append([]byte(nil), c[:n]...),
			ProductID: binary.BigEndian.Uint16(c[n:]), SVN: binary.BigEndian.Uint16(c[n+2:])}, nil
	}
	return seal.KeyRequest{}, malformed("seal key policy")
}

// CommitOp is one change of a storage.commit batch: Value under Key, or
// Key deleted.
type CommitOp struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// Op kinds of a storage.commit request. They cross the boundary: Do NOT
// renumber.
const (
	commitPut    = 1
	commitDelete = 2
)

// MaxCommitOps caps the ops of one storage.commit request.
const MaxCommitOps = 1 << 14

// CommitRequest encodes a storage.commit request: u32 count | count × (u8 op
// | u16 key len | key | u32 value len | value), little-endian. A delete
// carries an empty value.
func CommitRequest(ops []CommitOp) ([]byte, error) {
	if len(ops) == 0 || len(ops) > MaxCommitOps {
		return nil, malformed("commit op count")
	}
	n := 4
	for _, op := range ops {
		if len(op.Key) == 0 || len(op.Key) > boundary.MaxStorageKey || len(op.Value) > boundary.MaxStorageValue || (op.Delete && len(op.Value) > 0) {
			return nil, malformed("commit op size")
		}
		n += 7 + len(op.Key) + len(op.Value)
	}
	if n > boundary.MaxStorageCommit {
		return nil, malformed("commit request size")
	}
	b := binary.LittleEndian.AppendUint32(make([]byte, 0, n), uint32(len(ops)))
	for _, op := range ops {
		kind := byte(commitPut)
		if op.Delete {
			kind = commitDelete
		}
		b = append(b, kind)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(op.Key)))
		b = append(b, op.Key...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(op.Value)))
		b = append(b, op.Value...)
	}
	return b, nil
}

// ParseCommitRequest decodes CommitRequest, failing closed on an unknown
// op, a size out of bounds or trailing bytes. The slices alias b.
func ParseCommitRequest(b []byte) ([]CommitOp, error) {
	if len(b) < 4 {
		return nil, malformed("commit request")
	}
	count := binary.LittleEndian.Uint32(b)
	if count == 0 || count > MaxCommitOps {
		return nil, malformed("commit op count")
	}
	b = b[4:]
	ops := make([]CommitOp, 0, count)
	for range count {
		if len(b) < 3 {
			return nil, malformed("commit op")
		}
		kind := b[0]
		kl := int(binary.LittleEndian.Uint16(b[1:]))
		b = b[3:]
		if (kind != commitPut && kind != commitDelete) || kl == 0 || kl > boundary.MaxStorageKey || len(b) < kl+4 {
			return nil, malformed("commit op key")
		}
		key := b[:kl:kl]
		vl := int(binary.LittleEndian.Uint32(b[kl:]))
		b = b[kl+4:]
		if vl > boundary.MaxStorageValue || vl > len(b) || (kind == commitDelete && vl != 0) {
			return nil, malformed("commit op value")
		}
		ops = append(ops, CommitOp{Key: key, Value: b[:vl:vl], Delete: kind == commitDelete})
		b = b[vl:]
	}
	if len(b) != 0 {
		return nil, malformed("commit request trailing bytes")
	}
	return ops, nil
}
