package eventlog

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"testing"
)

// header returns a Spec ID Event03 header naming algs (id, size) pairs.
func header(algs ...[2]uint16) []byte {
	var spec []byte
	spec = append(spec, "Spec ID Event03\x00"...)
	spec = binary.LittleEndian.AppendUint32(spec, 0)
	spec = append(spec, 0, 2, 2, 2)
	spec = binary.LittleEndian.AppendUint32(spec, uint32(len(algs)))
	for _, a := range algs {
		spec = binary.LittleEndian.AppendUint16(spec, a[0])
		spec = binary.LittleEndian.AppendUint16(spec, a[1])
	}
	spec = append(spec, 0)
	b := binary.LittleEndian.AppendUint32(nil, 0)
	b = binary.LittleEndian.AppendUint32(b, evNoAction)
	b = append(b, make([]byte, 20)...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(spec)))
	return append(b, spec...)
}

type bankDigest struct {
	alg uint16
	d   []byte
}

// event returns a TCG_PCR_EVENT2 on RTMR rtmr with the given digests.
func event(rtmr int, typ uint32, ds []bankDigest, data []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(rtmr+1))
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ds)))
	for _, d := range ds {
		b = binary.LittleEndian.AppendUint16(b, d.alg)
		b = append(b, d.d...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

const algSHA256 = 0x000B

// TestSHA384BankSelected: in a log with a SHA-256 and a SHA-384 bank, the
// SHA-384 digest is the one replayed (whatever the order of the banks);
// an event without a SHA-384 digest, or a Spec ID that gives SHA-384
// another size, is refused rather than replayed from another bank.
func TestSHA384BankSelected(t *testing.T) {
	a := testApp(1)
	d384 := a.Digest()
	d256 := sha256.Sum256(a.EventData())
	var rtmr [Registers][DigestSize]byte
	rtmr[3] = sha512.Sum384(append(make([]byte, DigestSize), d384[:]...))
	both := []bankDigest{{algSHA256, d256[:]}, {algSHA384, d384[:]}}
	log := append(header([2]uint16{algSHA256, 32}, [2]uint16{algSHA384, 48}), event(3, evEventTag, both, a.EventData())...)
	events, err := Parse(log)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Replay(events, rtmr)
	if err != nil || len(res.Apps) != 1 || res.Apps[0].App != a {
		t.Fatalf("two banks: %v %+v", err, res)
	}
	only256 := append(header([2]uint16{algSHA256, 32}, [2]uint16{algSHA384, 48}), event(3, evEventTag, both[:1], a.EventData())...)
	if _, err := Parse(only256); !errors.Is(err, ErrFormat) {
		t.Errorf("event with only a SHA-256 digest: %v, want ErrFormat", err)
	}
	no384 := append(header([2]uint16{algSHA256, 32}), event(3, evEventTag, both[:1], a.EventData())...)
	if _, err := Parse(no384); !errors.Is(err, ErrFormat) {
		t.Errorf("log without a SHA-384 bank: %v, want ErrFormat", err)
	}
	short := append(header([2]uint16{algSHA384, 32}), event(3, evEventTag, []bankDigest{{algSHA384, d384[:32]}}, a.EventData())...)
	if _, err := Parse(short); !errors.Is(err, ErrFormat) {
		t.Errorf("SHA-384 declared 32 bytes: %v, want ErrFormat", err)
	}
}
