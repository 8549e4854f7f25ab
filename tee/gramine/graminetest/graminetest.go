// Package graminetest is a fake of Gramine's /dev/attestation for tests:
// a directory whose user_report_data and quote are FIFOs served by a
// goroutine, so that, as under Gramine, the quote read after writing 64
// bytes of report data is a quote over those bytes. The quote comes from
// a Quoter the test gives (for example a tee/sim platform, whose quotes
// verify under the simulator's root), so what the fake serves is real
// evidence of a known identity, and tee/gramine reads it through the same
// file operations it uses on Gramine.
//
// It works across processes (an app started by `cloister run --tee sgx`
// in its direct test mode reads it), because the exchange is in the file
// system, not in memory.
package graminetest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Quoter returns evidence over reportData: the bytes a read of quote gives.
type Quoter func(reportData [64]byte) ([]byte, error)

// Keys are the raw 16-byte seal keys the tree serves (keys/_sgx_mrenclave,
// keys/_sgx_mrsigner).
type Keys struct {
	MRENCLAVE, MRSIGNER [16]byte
}

// Tree is a served fake attestation directory.
type Tree struct {
	// Root is the directory to give tee/gramine (Config.Root) or the
	// launch value's attest=.
	Root string

	quoter Quoter
	done   chan struct{}

	mu      sync.Mutex
	stopped bool
	quotes  [][]byte
	errs    []error
}

// Start lays the tree out in root (an existing, empty directory) and
// serves it until Close: attestation_type is "dcap", the key files hold
// keys, and each report data written is answered by q.
func Start(root string, q Quoter, keys Keys) (*Tree, error) {
	if err := os.MkdirAll(filepath.Join(root, "keys"), 0o700); err != nil {
		return nil, fmt.Errorf("graminetest: %w", err)
	}
	for name, b := range map[string][]byte{
		"attestation_type":    []byte("dcap"),
		"keys/_sgx_mrenclave": keys.MRENCLAVE[:],
		"keys/_sgx_mrsigner":  keys.MRSIGNER[:],
	} {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("graminetest: %w", err)
		}
	}
	for _, name := range []string{"user_report_data", "quote"} {
		if err := syscall.Mkfifo(filepath.Join(root, name), 0o600); err != nil {
			return nil, fmt.Errorf("graminetest: %s: %w", name, err)
		}
	}
	t := &Tree{Root: root, quoter: q, done: make(chan struct{})}
	go t.serve()
	return t, nil
}

// serve answers one exchange after another: read the report data (until
// the writer closes), make the quote, hand it to the next reader. A wrong
// length or a quoter error is recorded and answered with an empty quote,
// which tee/gramine refuses, so the app fails instead of hanging.
func (t *Tree) serve() {
	defer close(t.done)
	rdPath, qPath := filepath.Join(t.Root, "user_report_data"), filepath.Join(t.Root, "quote")
	for {
		rd, err := os.OpenFile(rdPath, os.O_RDONLY, 0)
		if t.isStopped() {
			if err == nil {
				rd.Close()
			}
			return
		}
		if err != nil {
			t.record(nil, err)
			return
		}
		data, err := io.ReadAll(io.LimitReader(rd, 65))
		rd.Close()
		var quote []byte
		switch {
		case err != nil:
			t.record(nil, err)
		case len(data) != 64:
			t.record(nil, fmt.Errorf("graminetest: %d bytes written to user_report_data, want 64", len(data)))
		default:
			quote, err = t.quoter([64]byte(data))
			t.record(quote, err)
		}
		q, err := os.OpenFile(qPath, os.O_WRONLY, 0)
		if t.isStopped() {
			if err == nil {
				q.Close()
			}
			return
		}
		if err != nil {
			t.record(nil, err)
			return
		}
		q.Write(quote)
		q.Close()
	}
}

func (t *Tree) isStopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopped
}

func (t *Tree) record(quote []byte, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.errs = append(t.errs, err)
		return
	}
	t.quotes = append(t.quotes, quote)
}

// Quotes returns copies of the quotes served so far, in order.
func (t *Tree) Quotes() [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([][]byte, len(t.quotes))
	for i, q := range t.quotes {
		out[i] = append([]byte(nil), q...)
	}
	return out
}

// Err returns the errors met while serving (bad writes, quoter errors).
func (t *Tree) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return errors.Join(t.errs...)
}

// closeWait bounds Close: the server is unblocked by opening the FIFO end
// it waits on, and this long is allowed for it to notice.
const closeWait = 10 * time.Second

// Close stops serving. The serving goroutine may be blocked opening either
// FIFO; Close opens the other end of both (without blocking) until it has
// returned, or fails after closeWait.
func (t *Tree) Close() error {
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
	deadline := time.Now().Add(closeWait)
	for {
		if f, err := os.OpenFile(filepath.Join(t.Root, "user_report_data"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		if f, err := os.OpenFile(filepath.Join(t.Root, "quote"), os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		select {
		case <-t.done:
			return nil
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("graminetest: the server did not stop")
		}
	}
}
