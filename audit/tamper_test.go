package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

// dropTriggers does what an attacker with write access to the database
// would do first.
func dropTriggers(t *testing.T, db *store.DB) {
	t.Helper()
	for _, tr := range []string{"audit_events_no_update", "audit_events_no_delete", "audit_hashes_no_update",
		"audit_hashes_no_delete", "audit_checkpoints_no_update", "audit_checkpoints_no_delete"} {
		if _, err := db.W.Exec(`DROP TRIGGER ` + tr); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyNamesTheFirstTamperedIndex(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, db *store.DB)
		index  int64
		old    int64 // size of an older checkpoint kept elsewhere, 0 for none
		want   string
	}{
		{
			name: "edited event",
			tamper: func(t *testing.T, db *store.DB) {
				mustExec(t, db, `UPDATE audit_events SET body = CAST(REPLACE(body, 'aid_12', 'aid_99') AS BLOB) WHERE idx = 12`)
			},
			index: 12, want: "edited",
		},
		{
			name:   "deleted event",
			tamper: func(t *testing.T, db *store.DB) { mustExec(t, db, `DELETE FROM audit_events WHERE idx = 7`) },
			index:  7, want: "deleted",
		},
		{
			name: "inserted event in the middle",
			tamper: func(t *testing.T, db *store.DB) {
				// Shift events 20.. up by one and slip a forged one in at 20.
				mustExec(t, db, `UPDATE audit_events SET idx = idx + 1000 WHERE idx >= 20`)
				mustExec(t, db, `UPDATE audit_events SET idx = idx - 999 WHERE idx >= 1000`)
				mustExec(t, db, `INSERT INTO audit_events (idx, body, salt, type, time)
					SELECT 20, body, salt, type, time FROM audit_events WHERE idx = 3`)
			},
			index: 20, want: "inserted",
		},
		{
			name: "inserted event at the end",
			tamper: func(t *testing.T, db *store.DB) {
				mustExec(t, db, `INSERT INTO audit_events (idx, body, salt, type, time)
					SELECT 40, body, salt, type, time FROM audit_events WHERE idx = 3`)
			},
			index: 40, want: "inserted",
		},
		{
			name: "swapped events",
			tamper: func(t *testing.T, db *store.DB) {
				mustExec(t, db, `UPDATE audit_events SET idx = -1 WHERE idx = 30`)
				mustExec(t, db, `UPDATE audit_events SET idx = 30 WHERE idx = 25`)
				mustExec(t, db, `UPDATE audit_events SET idx = 25 WHERE idx = -1`)
			},
			index: 25, want: "reordered",
		},
		{
			name: "truncated below an older checkpoint",
			tamper: func(t *testing.T, db *store.DB) {
				// A careful attacker removes the tail and every trace of it:
				// events, hashes, checkpoints and head all agree on 33.
				mustExec(t, db, `DELETE FROM audit_events WHERE idx >= 33`)
				mustExec(t, db, fmt.Sprintf(`DELETE FROM audit_hashes WHERE id >= %d`, tlog.StoredHashCount(33)))
				mustExec(t, db, `DELETE FROM audit_checkpoints WHERE size > 33`)
				var note []byte
				if err := db.R.Get(&note, `SELECT note FROM audit_checkpoints WHERE size = 33`); err != nil {
					t.Fatal(err)
				}
				cp, err := audit.ParseCheckpoint(note, vkeyOf(t, db))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := db.W.Exec(`UPDATE audit_head SET size = 33, root = ?`, cp.Root[:]); err != nil {
					t.Fatal(err)
				}
				if _, err := audit.Verify(context.Background(), db, vkeyOf(t, db), nil); err != nil {
					t.Fatalf("the truncated log should look consistent on its own: %v", err)
				}
			},
			old:   40,
			index: 33, want: "truncated",
		},
		{
			name: "truncated with the log's own traces left",
			tamper: func(t *testing.T, db *store.DB) {
				mustExec(t, db, `DELETE FROM audit_events WHERE idx >= 35`)
			},
			index: 35, want: "deleted",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Open(t, store.SQLite)
			l, _ := openLog(t, db)
			vkeys[db] = l.VerifierKey()
			for i := range 40 {
				if err := l.Write(ctx, func(tx *audit.Tx) error { _, err := tx.Append(ev(i)); return err }); err != nil {
					t.Fatal(err)
				}
			}
			var old *audit.Checkpoint
			if c.old > 0 {
				var note []byte
				if err := db.R.Get(&note, `SELECT note FROM audit_checkpoints WHERE size = ?`, c.old); err != nil {
					t.Fatal(err)
				}
				var err error
				if old, err = audit.ParseCheckpoint(note, l.VerifierKey()); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := audit.Verify(ctx, db, l.VerifierKey(), old); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			l.Close()
			dropTriggers(t, db)
			c.tamper(t, db)
			_, err := audit.Verify(ctx, db, l.VerifierKey(), old)
			var te *audit.TamperError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want a TamperError", err)
			}
			if te.Index != c.index || !strings.Contains(te.Msg, c.want) {
				t.Fatalf("got %q at index %d; want %q at index %d", te.Msg, te.Index, c.want, c.index)
			}
		})
	}
}

// vkeyOf finds the verifier key of the log under test (one per database).
var vkeys = map[*store.DB]string{}

func vkeyOf(t *testing.T, db *store.DB) string { return vkeys[db] }

func mustExec(t *testing.T, db *store.DB, q string) {
	t.Helper()
	if _, err := db.W.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
