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
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"aidants/store"
	"aidants/store/pgcluster"
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
	theCluster  *pgcluster.Cluster
	clusterErr  error
	dbCounter   atomic.Int64
)

// PostgresDSN creates a fresh database in the shared throwaway cluster and
// returns its connection string. It skips (or fails in CI) when PostgreSQL
// is not installed.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	if !pgcluster.Available() {
		SkipOrFail(t, "PostgreSQL binaries (initdb, postgres) are not on PATH")
	}
	clusterOnce.Do(func() { theCluster, clusterErr = pgcluster.Start(pgcluster.Options{}) })
	if clusterErr != nil {
		t.Fatalf("start postgres: %v", clusterErr)
	}
	dsn, err := theCluster.CreateDatabase(fmt.Sprintf("t%d_%d", os.Getpid(), dbCounter.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

func stopCluster() {
	if theCluster != nil {
		theCluster.Stop()
	}
}

// PostgresCopy copies the database of dsn (made by PostgresDSN) into a
// new one, as a backup taken now and restored later would be, and returns
// the copy's DSN. Nobody may be connected to the original.
func PostgresCopy(t testing.TB, dsn string) string {
	t.Helper()
	var src string
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "dbname="); ok {
			src = v
		}
	}
	if src == "" || theCluster == nil {
		t.Fatalf("PostgresCopy: %q is not a database of the test cluster", dsn)
	}
	copied, err := theCluster.CopyDatabase(src, fmt.Sprintf("t%d_%d", os.Getpid(), dbCounter.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return copied
}
