package wire

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/seal"
	"github.com/cloister-dev/cloister/tee"
)

func TestLaunch(t *testing.T) {
	l := Launch{RegionFD: 3, TEE: "sim-sgx"}
	if got, err := ParseLaunch(l.String()); err != nil || got != l {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	for _, bad := range []string{
		"", "v2", "v1 region=3 tee=sim-sgx", "v1 region=3 events=4 tee=sim-sgx", "v2 region=3 events=4 tee=sim-sgx",
		"v2 region=3", "v2 region=2 tee=sim-sgx", "v2 region=x tee=sim-sgx",
		"v2 region=3 region=4", "v2 region=3 tee=", "v2 region=3 tee=a extra=1",
		"v2 region=3 what=sim-sgx", "v2 tee=a tee=b",
	} {
		if _, err := ParseLaunch(bad); err == nil {
			t.Errorf("ParseLaunch(%q) succeeded", bad)
		}
	}
}

func TestTableFitsRegion(t *testing.T) {
	tab, err := Table()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint32{CallSimIdentity, CallSimSealKey, boundary.CallNetRead, boundary.CallEvidenceQuote} {
		if _, ok := tab.Lookup(id); !ok {
			t.Errorf("call %#x not in the table", id)
		}
	}
	// NewClient checks every call's largest frames against the rings.
	r, err := boundary.Create(RegionConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := boundary.NewClient(r, tab); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	for _, id := range []tee.Identity{
		{Measurement: bytes.Repeat([]byte{1}, 32), Signer: bytes.Repeat([]byte{2}, 32), ProductID: 7, SVN: 9, Debug: true},
		{Measurement: bytes.Repeat([]byte{3}, 48), ProductID: 1},
	} {
		b, err := EncodeIdentity(nil, tee.KindSimTDX, id)
		if err != nil {
			t.Fatal(err)
		}
		kind, got, err := ParseIdentity(b)
		if err != nil || kind != tee.KindSimTDX || fmt.Sprint(got) != fmt.Sprint(id) {
			t.Fatalf("round trip = %s %+v, %v; want %+v", kind, got, err, id)
		}
		// Every strict prefix and any trailing byte is rejected.
		for i := range b {
			if _, _, err := ParseIdentity(b[:i]); err == nil {
				t.Errorf("prefix of %d bytes parsed", i)
			}
		}
		if _, _, err := ParseIdentity(append(b, 0)); err == nil {
			t.Error("trailing byte parsed")
		}
	}
}

func TestSealKeyRequestRoundTrip(t *testing.T) {
	for _, r := range []seal.KeyRequest{
		{Policy: seal.PolicyEnclave, Measurement: bytes.Repeat([]byte{1}, 32)},
		{Policy: seal.PolicySigner, Signer: bytes.Repeat([]byte{2}, 32), ProductID: 0x102, SVN: 0x304},
	} {
		b, err := SealKeyRequest(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseSealKeyRequest(b)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(r) {
			t.Fatalf("round trip = %+v, %v; want %+v", got, err, r)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {9, 1, 2}, {2, 1, 2, 3, 4}} {
		if _, err := ParseSealKeyRequest(bad); err == nil {
			t.Errorf("ParseSealKeyRequest(%x) succeeded", bad)
		}
	}
}

func TestListPage(t *testing.T) {
	var page []byte
	for _, k := range []string{"p/a", "p/b", "p/c"} {
		var ok bool
		if page, ok = AppendListKey(page, []byte(k), 100); !ok {
			t.Fatal("key did not fit")
		}
	}
	if _, ok := AppendListKey(page, []byte("p/d"), len(page)+4); ok {
		t.Fatal("a key beyond the bound fit")
	}
	keys, err := ParseListPage(page, []byte("p/"), nil)
	if err != nil || fmt.Sprintf("%s", keys) != "[p/a p/b p/c]" {
		t.Fatalf("ParseListPage = %s, %v", keys, err)
	}
	// A hostile host: wrong prefix, out of order, not after the cursor.
	for _, tc := range []struct {
		prefix, after string
	}{{"q/", ""}, {"p/", "p/b"}} {
		if _, err := ParseListPage(page, []byte(tc.prefix), []byte(tc.after)); err == nil {
			t.Errorf("page accepted for prefix %q after %q", tc.prefix, tc.after)
		}
	}
	swapped, _ := AppendListKey(nil, []byte("p/b"), 100)
	swapped, _ = AppendListKey(swapped, []byte("p/a"), 100)
	if _, err := ParseListPage(swapped, []byte("p/"), nil); err == nil {
		t.Error("unordered page accepted")
	}
	if _, err := ParseListPage(page[:len(page)-1], []byte("p/"), nil); err == nil {
		t.Error("truncated page accepted")
	}
}

func TestCodecBounds(t *testing.T) {
	if _, _, err := ParseHandleAddr(make([]byte, 8)); err == nil {
		t.Error("zero handle accepted")
	}
	if _, err := HandleAddr(nil, 1, string(make([]byte, boundary.MaxNetAddr+1))); err == nil {
		t.Error("oversized address encoded")
	}
	if _, err := ParseWritten([]byte{5, 0, 0, 0}, 4); err == nil {
		t.Error("more written than sent accepted")
	}
	if _, err := ParseWritten([]byte{0, 0, 0, 0}, 4); err == nil {
		t.Error("zero written accepted")
	}
	if _, _, err := ParseKeyRecord([]byte{5, 0, 'a'}); err == nil {
		t.Error("key longer than the payload accepted")
	}
}

// FuzzParsers: no payload from the other side makes a decoder panic, and
// whatever decodes re-encodes to the same bytes where the shape is
// canonical.
func FuzzParsers(f *testing.F) {
	id, _ := EncodeIdentity(nil, tee.KindSimSGX, tee.Identity{Measurement: []byte{1}, Signer: []byte{2}})
	page, _ := AppendListKey(nil, []byte("p/a"), 100)
	kr, _ := KeyRecord([]byte("k"), []byte("v"))
	lr, _ := ListRequest([]byte("p/"), []byte("p/a"))
	for _, s := range [][]byte{id, page, kr, lr, ReadRequest(make([]byte, ReadRequestSize), 1, 2, 3), {1, 2, 3, 4}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if kind, got, err := ParseIdentity(b); err == nil {
			re, err := EncodeIdentity(nil, kind, got)
			if err != nil || !bytes.Equal(re, b) {
				t.Fatalf("identity %x re-encodes to %x, %v", b, re, err)
			}
		}
		if k, r, err := ParseKeyRecord(b); err == nil {
			re, err := KeyRecord(k, r)
			if err != nil || !bytes.Equal(re, b) {
				t.Fatalf("key record %x re-encodes to %x, %v", b, re, err)
			}
		}
		ParseListPage(b, nil, nil)
		ParseListRequest(b)
		ParseHandleAddr(b)
		ParseHandle(b)
		ParseRead(b)
		ParseDial(b)
		ParseWritten(b, 10)
		ParseSealKeyRequest(b)
		ParseLaunch(string(b))
	})
}

func TestCommitRequestRoundTrip(t *testing.T) {
	ops := []CommitOp{{Key: []byte("a"), Value: []byte("one")}, {Key: []byte("b"), Delete: true}, {Key: []byte("c"), Value: nil}}
	b, err := CommitRequest(ops)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCommitRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ops) {
		t.Fatalf("got %d ops, want %d", len(got), len(ops))
	}
	for i := range ops {
		if string(got[i].Key) != string(ops[i].Key) || string(got[i].Value) != string(ops[i].Value) || got[i].Delete != ops[i].Delete {
			t.Errorf("op %d = %+v, want %+v", i, got[i], ops[i])
		}
	}
	// Every strict prefix, and any trailing byte, is rejected.
	for n := range len(b) {
		if _, err := ParseCommitRequest(b[:n]); err == nil {
			t.Errorf("prefix of %d bytes parsed", n)
		}
	}
	if _, err := ParseCommitRequest(append(b, 0)); err == nil {
		t.Error("trailing byte parsed")
	}
	for _, bad := range [][]CommitOp{nil, {{Key: nil, Value: []byte("v")}}, {{Key: []byte("k"), Value: []byte("v"), Delete: true}}} {
		if _, err := CommitRequest(bad); err == nil {
			t.Errorf("CommitRequest(%+v) succeeded", bad)
		}
	}
}
