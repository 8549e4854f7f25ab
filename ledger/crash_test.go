package ledger

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/kv/kvtest"
)

// TestCrashAtEveryWrite injects a crash at each host write of a run of
// appends, in both ways a write can die (dropped before it lands, or
// landed but unacknowledged), reopens the host storage and checks: every
// acknowledged entry is there with its seqno and contents, the entry in
// flight is whole or absent, old receipts still verify, and the ledger
// accepts appends again.
func TestCrashAtEveryWrite(t *testing.T) {
	const appends = 8
	for _, fault := range []kvtest.Fault{kvtest.FaultDropBefore, kvtest.FaultDropAfter} {
		for k := 0; k <= appends; k++ {
			t.Run(fmt.Sprintf("fault%d-write%d", fault, k), func(t *testing.T) {
				ctx := context.Background()
				mem := kvtest.NewMemBackend()
				b := &kvtest.Faulty{Backend: mem}
				// Signatures only by count (in the same segment as the
				// entry that completes the count), never by the timer:
				// each append is then exactly one host write.
				opts := testOptions(b)
				opts.SignInterval = time.Hour
				if k == 0 {
					// The first write is the key record.
					b.FailNext(fault)
					if _, err := Open(ctx, opts); err == nil {
						t.Fatal("open with a failed key write succeeded")
					}
				}
				n, err := Open(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				acked := map[uint64]string{}
				var inflight string
				for i := 1; i <= appends; i++ {
					c := fmt.Sprint("entry ", i)
					if i == k {
						b.FailNext(fault)
					}
					tx, err := n.Append(ctx, "c", c)
					if err != nil {
						if !errors.Is(err, ErrStopped) {
							t.Fatalf("append %d: %v", i, err)
						}
						inflight = c
						break
					}
					acked[tx.Seqno] = c
				}
				if k > 0 && inflight == "" {
					t.Fatal("the fault did not fire")
				}
				if k > 0 {
					if _, err := n.Append(ctx, "c", "after the crash"); !errors.Is(err, ErrStopped) {
						t.Fatalf("a failed node accepted an append: %v", err)
					}
				}
				n.Close()

				n2 := openNode(t, mem)
				for s, c := range acked {
					e, err := n2.Entry(TxID{View: 2, Seqno: s})
					if err != nil || e.Contents != c {
						t.Fatalf("acknowledged seqno %d lost: %v %v", s, e, err)
					}
				}
				page, _ := n2.List("c", 0, 0)
				found := false
				for _, e := range page {
					if e.Contents == inflight {
						found = true
					}
				}
				if fault == kvtest.FaultDropAfter && inflight != "" && !found {
					t.Fatal("a landed write is missing")
				}
				if fault == kvtest.FaultDropBefore && found {
					t.Fatal("a dropped write is present")
				}
				if len(page) != len(acked)+map[bool]int{true: 1}[found] {
					t.Fatalf("%d entries, %d acknowledged", len(page), len(acked))
				}
				tx, err := n2.Append(ctx, "c", "after restart")
				if err != nil {
					t.Fatal(err)
				}
				if err := n2.WaitCommitted(ctx, tx); err != nil {
					t.Fatal(err)
				}
				for s := range acked {
					tr, ok, err := n2.Receipt(TxID{View: 2, Seqno: s})
					if err != nil || !ok {
						t.Fatalf("receipt %d: %v %v", s, ok, err)
					}
					checkReceipt(t, tr, n2.Identity().ServiceCert, s-1, mustSig(t, n2, TxID{View: 2, Seqno: s}).TreeSize)
				}
			})
		}
	}
}

const crashChildEnv = "CLOISTER_LEDGER_CRASH_CHILD"

// TestCrashChild is the child of TestKilledProcess: it appends from 8
// writers to a bbolt store and prints each acknowledged entry.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("child of TestKilledProcess")
	}
	s, err := host.OpenBoltStore(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	n, err := Open(context.Background(), testOptions(kvtest.HostBackend(s)))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				c := fmt.Sprintf("%d-w%d-%d", os.Getpid(), w, i)
				tx, err := n.Append(context.Background(), "c", c)
				if err != nil {
					return
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %d %s\n", tx.Seqno, c)
				out.Flush()
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	os.Exit(0)
}

// TestKilledProcess re-executes the test binary as a writer on a bbolt
// file and SIGKILLs it after a different number of acknowledgements each
// round (so at different points of its writes); after each kill the file
// must reopen with every acknowledged entry present.
func TestKilledProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	acked := map[uint64]string{}
	for round, after := range []int{1, 7, 40, 150, 400} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		seen := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "ack" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: child said %q", round, sc.Text())
			}
			s, _ := strconv.ParseUint(f[1], 10, 64)
			acked[s] = f[2]
			if seen++; seen == after {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		// Acks printed before the kill landed count too.
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ack" {
				s, _ := strconv.ParseUint(f[1], 10, 64)
				acked[s] = f[2]
			}
		}
		cmd.Wait()
		if seen < after {
			t.Fatalf("round %d: child stopped after %d acks", round, seen)
		}
		s, err := host.OpenBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		n, err := Open(context.Background(), testOptions(kvtest.HostBackend(s)))
		if err != nil {
			s.Close()
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		for seq, c := range acked {
			e, err := n.Entry(TxID{View: 2, Seqno: seq})
			if err != nil || e.Contents != c {
				t.Fatalf("round %d: acknowledged seqno %d lost: %v %v", round, seq, e, err)
			}
		}
		n.Close()
		s.Close()
	}
}
