package boundary

import (
	"bytes"
	"context"
	"testing"
)

// A second client on a region whose first client made calls and closed
// (a loader that exec'd the app it decrypted: enclave.RunHandoff) starts
// at the indices the first left, and its calls work; the first sync of a
// new client is not counted as a recovery.
func TestClientResumesAfterHandoff(t *testing.T) {
	r := newRegion(t, smallCfg)
	startServer(t, r, serverTable(t), echoHandler)
	ctx := context.Background()
	resp := make([]byte, 1024)
	first, err := NewClient(r, clientTable(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 37 { // leave the indices somewhere in the middle of the rings
		if _, err := first.Call(ctx, callEcho, bytes.Repeat([]byte{byte(i)}, 100+i), resp); err != nil {
			t.Fatal(err)
		}
	}
	first.Close()
	second := newClient(t, r, clientTable(t))
	second.Resume()
	for i := range 200 {
		req := bytes.Repeat([]byte{byte(i)}, i%700)
		n, err := second.Call(ctx, callEcho, req, resp)
		if err != nil || !bytes.Equal(resp[:n], req) {
			t.Fatalf("call %d of the second client: %v", i, err)
		}
	}
	if c := second.Counters(); c.Resyncs != 0 || c.BadIndex != 0 {
		t.Errorf("second client counters %+v", c)
	}
}
