package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A real PostgreSQL server for the tests, started from the binaries found
// on this machine into a temporary directory, listening only on a Unix
// socket there. Without the binaries (Debian: apt-get install postgresql)
// or a way to run them, the tests skip and say why - except in CI
// (CI=true), where they fail: .ci/run installs PostgreSQL, so a missing
// server there is a broken CI, not a machine without PostgreSQL.

const (
	pgInitTimeout  = 2 * time.Minute // initdb on a slow, shared machine
	pgStartTimeout = time.Minute
	pgStopTimeout  = 30 * time.Second
	pgSocketPort   = "5432" // only names the socket file; no TCP
	pgInstallHint  = "install PostgreSQL (Debian/Ubuntu: apt-get install postgresql) to run it"
)

// pgServer is one running test server.
type pgServer struct {
	sockDir string
	mu      sync.Mutex
	dbs     int
}

// dsn is the connection string for database db over the Unix socket.
func (p *pgServer) dsn(db string) string {
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=%s sslmode=disable connect_timeout=10", p.sockDir, pgSocketPort, db)
}

// newDB creates a fresh, empty database and returns its DSN.
func (p *pgServer) newDB(t *testing.T) string {
	t.Helper()
	p.mu.Lock()
	p.dbs++
	name := fmt.Sprintf("cloister_test_%d", p.dbs)
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), pgStartTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.dsn("postgres"))
	if err != nil {
		t.Fatalf("postgres: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("postgres: create database: %v", err)
	}
	return p.dsn(name)
}

// pgBinDir finds a directory holding initdb and postgres.
func pgBinDir() (string, []string) {
	var tried []string
	dirs := []string{}
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	} else {
		tried = append(tried, "PATH")
	}
	dirs = append(dirs, "/usr/local/bin", "/usr/local/pgsql/bin")
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(versions) - 1; i >= 0; i-- { // newest first (by name)
		dirs = append(dirs, versions[i])
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
		tried = append(tried, d)
	}
	tried = append(tried, "/usr/lib/postgresql/*/bin")
	return "", tried
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// pgCredential returns the user to run the server as: the current one
// unless that is root, which PostgreSQL refuses; then "postgres" (the
// Debian package's user) or "nobody".
func pgCredential() (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		return nil, "", nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, name, nil
	}
	return nil, "", errors.New("running as root and found no user postgres or nobody to run the server as")
}

// skipper is the part of testing.TB pgUnavailable uses.
type skipper interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// pgUnavailable ends the test when no server can run: a skip on a
// developer's machine, a failure in CI (CI=true), where the PostgreSQL
// tests must run.
func pgUnavailable(t skipper, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL test FAILED (CI=true, where .ci/run installs PostgreSQL): "+format, args...)
		return
	}
	t.Skipf("PostgreSQL test skipped: "+format, args...)
}

// startPostgres starts a server for this test and stops it in t.Cleanup,
// or skips the test saying what was tried.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	bin, tried := pgBinDir()
	if bin == "" {
		pgUnavailable(t, "no initdb and postgres in %v; %s", tried, pgInstallHint)
	}
	cred, who, err := pgCredential()
	if err != nil {
		pgUnavailable(t, "%v (PostgreSQL will not run as root)", err)
	}
	dir := t.TempDir()
	if cred != nil {
		// The server's user must reach its directory: open the path
		// down to it for traversal (the test's own temp dirs are 0700).
		for d := dir; d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
				if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
					pgUnavailable(t, "cannot open %s to user %s: %v", d, who, err)
				}
			}
		}
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			pgUnavailable(t, "cannot hand %s to user %s: %v", dir, who, err)
		}
	}
	data := filepath.Join(dir, "data")
	sock := dir // the socket is dir/.s.PGSQL.5432
	if n := len(filepath.Join(sock, ".s.PGSQL."+pgSocketPort)); n > 100 {
		pgUnavailable(t, "socket path under %s is %d bytes, over the Unix limit; set TMPDIR shorter", sock, n)
	}
	as := ""
	if who != "" {
		as = " as user " + who
	}

	ctx, cancel := context.WithTimeout(context.Background(), pgInitTimeout)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		pgUnavailable(t, "%s/initdb%s failed: %v\n%s", bin, as, err, tail(out))
	}

	var logBuf syncBuffer
	srv := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-k", sock, "-p", pgSocketPort,
		"-c", "listen_addresses=", // no TCP at all
		"-c", "fsync=off", // a throwaway server: durability is PostgreSQL's, not under test
		"-c", "max_connections=40",
		"-c", "shared_buffers=16MB",
	)
	// If this test process dies without cleanup (a go test timeout), the
	// kernel kills the server too.
	srv.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	srv.Dir = dir
	srv.Env = append(os.Environ(), "LC_ALL=C")
	srv.Stdout, srv.Stderr = &logBuf, &logBuf
	if err := srv.Start(); err != nil {
		pgUnavailable(t, "start %s/postgres%s: %v", bin, as, err)
	}
	exited := make(chan struct{})
	go func() { srv.Wait(); close(exited) }()
	stop := func() {
		srv.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-exited:
		case <-time.After(pgStopTimeout):
			srv.Process.Kill()
			<-exited
		}
	}
	p := &pgServer{sockDir: sock}
	deadline := time.Now().Add(pgStartTimeout)
	for {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(cctx, p.dsn("postgres"))
		if err == nil {
			conn.Close(cctx)
			ccancel()
			break
		}
		ccancel()
		select {
		case <-exited:
			pgUnavailable(t, "%s/postgres%s exited at start:\n%s", bin, as, tail(logBuf.Bytes()))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			pgUnavailable(t, "%s/postgres%s not ready after %v: %v\n%s", bin, as, pgStartTimeout, err, tail(logBuf.Bytes()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(stop)
	t.Logf("PostgreSQL from %s running%s on %s", bin, as, sock)
	return p
}

// syncBuffer is a bytes.Buffer safe for the server's output goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 {
		return len(p), nil // bounded: the start of the log is what matters
	}
	return b.b.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}

// tail returns the last 2 KB of out.
func tail(out []byte) []byte {
	if len(out) > 2048 {
		return out[len(out)-2048:]
	}
	return out
}

// openPostgres opens a PostgresStore on a fresh database of p.
func openPostgres(t *testing.T, p *pgServer) *PostgresStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pgStartTimeout)
	defer cancel()
	s, err := OpenPostgresStore(ctx, p.newDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPostgresStore runs the conformance suite against a real server, then
// what only a server store has to get right.
func TestPostgresStore(t *testing.T) {
	p := startPostgres(t)
	testStore(t, func(t *testing.T) Store { return openPostgres(t, p) })

	t.Run("persists and reopens", func(t *testing.T) {
		ctx := context.Background()
		dsn := p.newDB(t)
		s, err := OpenPostgresStore(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, []byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s, err = OpenPostgresStore(ctx, dsn) // the table exists now
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got, err := s.Get(ctx, []byte("k")); err != nil || string(got) != "v" {
			t.Fatalf("after reopen: Get = %q, %v", got, err)
		}
	})
	t.Run("keys bytewise and paged", func(t *testing.T) {
		ctx := context.Background()
		s := openPostgres(t, p)
		// More keys than one page, with bytes a text collation would
		// reorder, and prefixes ending in 0xff.
		var ops []BatchOp
		want := 0
		for i := range 2*pgKeysPage + 7 {
			k := []byte{0xff, byte(i >> 8), byte(i), 'a' + byte(i%3)}
			ops = append(ops, BatchOp{Key: k, Value: []byte{1}})
			want++
		}
		ops = append(ops, BatchOp{Key: []byte{0xfe, 0xff}}, BatchOp{Key: []byte{0x00}}, BatchOp{Key: []byte("B")}, BatchOp{Key: []byte("a")})
		if err := s.CommitBatch(ctx, ops); err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		if err := s.Keys(ctx, []byte{0xff}, nil, func(k []byte) bool {
			got = append(got, bytes.Clone(k))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Fatalf("Keys(0xff) = %d keys, want %d", len(got), want)
		}
		for i := 1; i < len(got); i++ {
			if bytes.Compare(got[i-1], got[i]) >= 0 {
				t.Fatalf("Keys out of order at %d: %x then %x", i, got[i-1], got[i])
			}
		}
		var all []string
		s.Keys(ctx, nil, nil, func(k []byte) bool {
			all = append(all, fmt.Sprintf("%x", k))
			return len(all) < 4
		})
		if fmt.Sprint(all) != "[00 42 61 feff]" {
			t.Fatalf("Keys() first four = %v, want [00 42 61 feff]", all)
		}
		// fn may call the store while Keys runs.
		n := 0
		if err := s.Keys(ctx, []byte{0xff}, nil, func(k []byte) bool {
			if _, err := s.Get(ctx, k); err != nil {
				t.Errorf("Get inside Keys: %v", err)
				return false
			}
			n++
			return true
		}); err != nil || n != want {
			t.Fatalf("Keys with Get inside = %d, %v; want %d", n, err, want)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		s := openPostgres(t, p)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Put(ctx, []byte("k"), []byte("v")); err == nil {
			t.Error("Put with a cancelled context succeeded")
		}
		if err := s.CommitBatch(ctx, []BatchOp{{Key: []byte("k"), Value: []byte("v")}}); err == nil {
			t.Error("CommitBatch with a cancelled context succeeded")
		}
		if _, err := s.Get(context.Background(), []byte("k")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get after cancelled writes = %v, want ErrNotFound", err)
		}
	})
	t.Run("concurrent batches are atomic", func(t *testing.T) {
		ctx := context.Background()
		s := openPostgres(t, p)
		// Writers each set keys x and y to the same value, in opposite
		// op orders (which would deadlock on row locks if applied as
		// given); a reader must never see x and y differ.
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					x, err1 := s.Get(ctx, []byte("x"))
					y, err2 := s.Get(ctx, []byte("y"))
					if err1 == nil && err2 == nil && !bytes.Equal(x, y) {
						// Two reads are two snapshots: only a
						// torn batch would leave them differing
						// often, so check again in one statement.
						var torn bool
						s.pool.QueryRow(ctx, `SELECT count(DISTINCT value) > 1 FROM `+pgTable+` WHERE key IN ('\x78', '\x79')`).Scan(&torn)
						if torn {
							t.Errorf("x and y differ within one snapshot")
						}
					}
					v := []byte(fmt.Sprint(w, "/", i))
					ops := []BatchOp{{Key: []byte("x"), Value: v}, {Key: []byte("y"), Value: v}}
					if w%2 == 1 {
						ops[0], ops[1] = ops[1], ops[0]
					}
					if err := s.CommitBatch(ctx, ops); err != nil {
						t.Errorf("CommitBatch: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		x, err1 := s.Get(ctx, []byte("x"))
		y, err2 := s.Get(ctx, []byte("y"))
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			t.Fatalf("x = %q (%v), y = %q (%v); want equal", x, err1, y, err2)
		}
	})
}

// StartTestPostgres is startPostgres for the host_test package's kv tests:
// it returns a function opening a PostgresStore on a fresh database.
func StartTestPostgres(t *testing.T) func(t *testing.T) (dsn string) {
	t.Helper()
	p := startPostgres(t)
	return p.newDB
}
