package store_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestMigrateIsIdempotent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n, err := db.Migrate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("second Migrate applied %d migrations, want 0", n)
		}
		ms, _ := store.Migrations(db.Dialect)
		v, err := db.SchemaVersion(ctx)
		if err != nil || v != len(ms) {
			t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(ms))
		}
	})
}

func TestTimeListAndConflictOnBothEngines(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Date(2026, 3, 12, 13, 5, 7, 123456789, time.FixedZone("CET", 3600))
		ins := db.Rebind(`INSERT INTO organisations (id, name, siret, demarches, active, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if _, err := db.W.ExecContext(ctx, ins, "org_1", "Une organisation", "12345678901234", store.List{"argent", "social"}, true, store.T(now), store.T(now)); err != nil {
			t.Fatal(err)
		}
		_, err := db.W.ExecContext(ctx, ins, "org_2", "Doublon", "12345678901234", store.List{}, true, store.T(now), store.T(now))
		if !store.IsConflict(err) {
			t.Fatalf("duplicate SIRET: err = %v, want a conflict", err)
		}
		var row struct {
			Demarches store.List `db:"demarches"`
			Active    bool       `db:"active"`
			Created   store.Time `db:"created_at"`
		}
		if err := db.R.GetContext(ctx, &row, db.Rebind(`SELECT demarches, active, created_at FROM organisations WHERE id = ?`), "org_1"); err != nil {
			t.Fatal(err)
		}
		if len(row.Demarches) != 2 || row.Demarches[1] != "social" || !row.Active {
			t.Fatalf("row = %+v", row)
		}
		if !row.Created.Equal(now.Truncate(time.Millisecond)) || row.Created.Location() != time.UTC {
			t.Fatalf("created_at = %v, want %v in UTC", row.Created, now)
		}
	})
}

func TestSQLiteReadersCannotWrite(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	_, err := db.R.Exec(`INSERT INTO instance_meta (key, value) VALUES ('a', 'b')`)
	if err == nil {
		t.Fatal("a write through the readers' pool succeeded; only the writer may write")
	}
}

func TestNewIDsSortByCreationAndDoNotRepeat(t *testing.T) {
	seen := map[string]bool{}
	prev := store.NewID("x")
	for range 2000 {
		id := store.NewID("x")
		if seen[id] || len(id) != 2+26 {
			t.Fatalf("id %q repeated or of the wrong length", id)
		}
		seen[id] = true
		if id[:11] < prev[:11] { // the time part never goes back
			t.Fatalf("%s sorts before the earlier %s", id, prev)
		}
		prev = id
	}
	a := store.NewID("x")
	time.Sleep(2 * time.Millisecond)
	if b := store.NewID("x"); b <= a {
		t.Fatalf("%s does not sort after %s", b, a)
	}
}

// TestSQLiteFilesAreTheOwnersOnly opens a new database under a permissive
// umask: the database, its WAL and shared memory are readable by their
// owner alone (they hold personal data).
func TestSQLiteFilesAreTheOwnersOnly(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "aidants.db")
	db, err := store.Open(ctx, "sqlite", path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want -rw-------", filepath.Base(f), st.Mode().Perm())
		}
	}
}
