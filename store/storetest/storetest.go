// Package storetest gives tests real databases: a fresh SQLite file, or a
// fresh database in a throwaway PostgreSQL cluster started from the system
// binaries (initdb, postgres) for the duration of the test binary.
//
// A package whose tests use PostgreSQL calls Main from its TestMain so that
// the cluster is stopped and removed at the end:
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
//
// When the binaries are absent the PostgreSQL tests are skipped with a loud
// message, unless AIDANTS_TEST_REQUIRE_ALL=1 (CI), which turns the skip into
// a failure.
package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"aidants/store"
)

// RequireAll tells whether a missing external tool must fail the test.
func RequireAll() bool { return os.Getenv("AIDANTS_TEST_REQUIRE_ALL") == "1" }

// SkipOrFail skips the test with a loud message, or fails it in CI.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if RequireAll() {
		t.Fatalf("AIDANTS_TEST_REQUIRE_ALL=1 but %s", msg)
	}
	t.Skipf("SKIPPED (install it to run this test): %s", msg)
}

// Main runs the tests and then stops the PostgreSQL cluster if one was
// started.
func Main(m *testing.M) {
	code := m.Run()
	stopCluster()
	os.Exit(code)
}

// Dialects are the engines every storage test runs on.
var Dialects = []store.Dialect{store.SQLite, store.Postgres}

// Each runs f once per engine, as subtests named after the dialect.
func Each(t *testing.T, f func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(string(d), func(t *testing.T) {
			f(t, Open(t, d))
		})
	}
}

// Open returns a migrated, empty database of the given dialect, closed at
// the end of the test.
func Open(t testing.TB, d store.Dialect) *store.DB {
	t.Helper()
	driver, dsn := DSN(t, d)
	ctx := context.Background()
	db, err := store.Open(ctx, driver, dsn, store.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", d, err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate %s: %v", d, err)
	}
	return db
}

// DSN returns the driver name and a data source for a fresh, empty
// database of the given dialect (not migrated).
func DSN(t testing.TB, d store.Dialect) (driver, dsn string) {
	t.Helper()
	switch d {
	case store.SQLite:
		return "sqlite", filepath.Join(t.TempDir(), "aidants.db")
	case store.Postgres:
		return "postgres", PostgresDSN(t)
	}
	t.Fatalf("unknown dialect %q", d)
	return "", ""
}

var (
	clusterOnce sync.Once
	theCluster  *cluster
	clusterErr  error
	dbCounter   atomic.Int64
)

// PostgresDSN creates a fresh database in the shared throwaway cluster and
// returns its connection string. It skips (or fails in CI) when PostgreSQL
// is not installed.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("initdb"); err != nil {
		SkipOrFail(t, "PostgreSQL binaries (initdb, postgres) are not on PATH")
	}
	clusterOnce.Do(func() { theCluster, clusterErr = startCluster() })
	if clusterErr != nil {
		t.Fatalf("start postgres: %v", clusterErr)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbCounter.Add(1))
	admin, err := sql.Open("pgx", theCluster.dsn("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return theCluster.dsn(name)
}

type cluster struct {
	dir  string // owned by the cluster's user
	cmd  *exec.Cmd
	done chan error
}

func (c *cluster) dsn(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=aidants dbname=%s sslmode=disable", c.dir, db)
}

// startCluster runs initdb and postgres as an unprivileged user when the
// tests run as root (initdb refuses root), listening on a unix socket only.
func startCluster() (*cluster, error) {
	dir, err := os.MkdirTemp("", "aidants-pg-")
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return nil, fmt.Errorf("tests run as root and there is no user nobody: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command("initdb", "-D", data, "-U", "aidants", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LC_ALL=C"}
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	c := &cluster{dir: dir, done: make(chan error, 1)}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig is tied to the thread that started the child: keep
		// this goroutine on its thread until postgres exits, so that a
		// test binary killed without cleanup takes postgres with it.
		runtime.LockOSThread()
		cmd := exec.Command("postgres", "-D", data, "-k", dir, "-c", "listen_addresses=",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200", "-c", "shared_buffers=64MB")
		cmd.Dir = dir
		cmd.Env = initdb.Env
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
		logf, _ := os.Create(filepath.Join(dir, "postgres.log"))
		if cred != nil && logf != nil {
			os.Chown(logf.Name(), int(cred.Uid), int(cred.Gid))
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.cmd = cmd
		started <- nil
		c.done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("postgres: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := sql.Open("pgx", c.dsn("postgres"))
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return c, nil
		}
		select {
		case werr := <-c.done:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres exited: %v: %s", werr, log)
		default:
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("postgres did not accept connections: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	os.RemoveAll(c.dir)
}

func stopCluster() {
	if theCluster != nil {
		theCluster.stop()
	}
}
