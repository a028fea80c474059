package dbfault_test

import (
	"errors"
	"testing"

	"aidants/internal/dbfault"
	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// TestReadersFailWhileTheWriterWorks is the harness's own contract: a
// fault hits only the pools and the statements it names, and heals.
func TestReadersFailWhileTheWriterWorks(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := dbfault.Open(t, d)
			var n int
			if err := db.R.Get(&n, `SELECT COUNT(*) FROM organisations`); err != nil {
				t.Fatal(err)
			}
			db.Fail(dbfault.Readers, "")
			if err := db.R.Get(&n, `SELECT COUNT(*) FROM organisations`); !errors.Is(err, dbfault.ErrInjected) {
				t.Fatalf("broken readers answered %v", err)
			}
			if _, err := db.W.Exec(db.Rebind(`INSERT INTO instance_meta (key, value) VALUES (?, ?)`), "k", "v"); err != nil {
				t.Fatalf("the writer should still work: %v", err)
			}
			db.Heal()
			db.Fail(dbfault.Writer, "instance_meta")
			if _, err := db.W.Exec(db.Rebind(`DELETE FROM instance_meta WHERE key = ?`), "k"); !errors.Is(err, dbfault.ErrInjected) {
				t.Fatalf("a broken statement answered %v", err)
			}
			if err := db.W.Get(&n, `SELECT COUNT(*) FROM organisations`); err != nil {
				t.Fatalf("another statement should work: %v", err)
			}
			db.Heal()
			if err := db.Clean.R.Get(&n, `SELECT COUNT(*) FROM instance_meta WHERE key = 'k'`); err != nil || n != 1 {
				t.Fatalf("the clean connection sees %d rows (%v)", n, err)
			}
			if db.Dialect != d || (d == store.SQLite) != (db.Path != "") {
				t.Fatalf("dialect %s, path %q", db.Dialect, db.Path)
			}
		})
	}
}
