package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

// dropAllTriggers removes every append-only trigger of the journal, as an
// operator with write access to the database could.
func dropAllTriggers(t *testing.T, db *store.DB) {
	t.Helper()
	for _, table := range []string{"audit_events", "audit_hashes", "audit_checkpoints", "audit_witnessed", "audit_origins", "audit_tiles"} {
		if db.Dialect == store.Postgres {
			mustExec(t, db, `DROP TRIGGER `+table+`_no_change ON `+table)
			mustExec(t, db, `DROP TRIGGER `+table+`_no_truncate ON `+table)
		} else {
			mustExec(t, db, `DROP TRIGGER `+table+`_no_update`)
			mustExec(t, db, `DROP TRIGGER `+table+`_no_delete`)
		}
	}
}

// TestVerifyNamesAnEditedColumn edits, in turn, every stored column of one
// event — the copies of body fields the journal's filters read, and the
// salt — and expects audit verify to name that event's index and the
// column, on both engines.
func TestVerifyNamesAnEditedColumn(t *testing.T) {
	edits := []struct {
		column, set string
	}{
		{"type", `type = 'aidant.logout'`},
		{"time", `time = time + 1`},
		{"organisation_id", `organisation_id = 'org_other'`},
		{"organisation_id", `organisation_id = NULL`},
		{"aidant_id", `aidant_id = 'aid_other'`},
		{"usager_id", `usager_id = 'usa_other'`},
		{"usager_id", `usager_id = NULL`},
		{"mandate_id", `mandate_id = 'man_other'`},
		{"service_id", `service_id = 'svc_other'`},
		{"service_id", `service_id = NULL`},
		{"demarches", `demarches = ',argent,'`},
		{"demarches", `demarches = NULL`},
		{"", `salt = body`},
		{"", `body = salt`},
	}
	for _, d := range storetest.Dialects {
		for _, e := range edits {
			t.Run(string(d)+"/"+e.set, func(t *testing.T) {
				ctx := context.Background()
				db := storetest.Open(t, d)
				l, _ := openLog(t, db)
				for i := range 30 {
					err := l.Write(ctx, func(tx *audit.Tx) error {
						e := ev(i)
						e.Usager, e.Mandate, e.Service = fmt.Sprintf("usa_%d", i), fmt.Sprintf("man_%d", i), "svc_impots"
						e.Demarches = []string{"argent", "social"}
						e.Detail = map[string]any{"note": "a \"quoted\" \\ value <&>", "n": i}
						_, err := tx.Append(e)
						return err
					})
					if err != nil {
						t.Fatal(err)
					}
				}
				res, err := audit.Verify(ctx, db, l.VerifierKey(), nil)
				if err != nil || res.Columns != 30 {
					t.Fatalf("before tampering: %v, %+v", err, res)
				}
				l.Close()
				dropAllTriggers(t, db)
				mustExec(t, db, `UPDATE audit_events SET `+e.set+` WHERE idx = 17`)
				_, err = audit.Verify(ctx, db, l.VerifierKey(), nil)
				var te *audit.TamperError
				if !errors.As(err, &te) || te.Index != 17 {
					t.Fatalf("verify after %s: %v, want a TamperError at index 17", e.set, err)
				}
				if !strings.Contains(te.Msg, e.column) {
					t.Fatalf("verify says %q, want the %s column named", te.Msg, e.column)
				}
			})
		}
	}
}

// TestVerifyNamesAColumnOfAnotherTypeOnSQLite rebuilds the events table
// without STRICT, as an operator could, and stores a column's same text as
// a BLOB (or the time as text): it reads back alike through ||, but no
// longer matches the journal's filters, which hides the event from the
// person and from scoped auditors. Verify names the index and the column.
func TestVerifyNamesAColumnOfAnotherTypeOnSQLite(t *testing.T) {
	for _, c := range []struct{ column, set string }{
		{"usager_id", `usager_id = CAST(usager_id AS BLOB)`},
		{"organisation_id", `organisation_id = CAST(organisation_id AS BLOB)`},
		{"type", `type = CAST(type AS BLOB)`},
		{"time", `time = CAST(time AS TEXT)`},
		{"demarches", `demarches = CAST(demarches AS BLOB)`},
		{"salt", `salt = CAST(salt AS TEXT)`},
	} {
		t.Run(c.column, func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Open(t, store.SQLite)
			l, _ := openLog(t, db)
			for i := range 20 {
				err := l.Write(ctx, func(tx *audit.Tx) error {
					e := ev(i)
					e.Usager, e.Demarches = fmt.Sprintf("usa_%d", i), []string{"argent"}
					_, err := tx.Append(e)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			dropAllTriggers(t, db)
			mustExec(t, db, `CREATE TABLE loose (idx INTEGER PRIMARY KEY, body, salt, type, time, organisation_id, aidant_id, usager_id, mandate_id, service_id, demarches)`)
			mustExec(t, db, `INSERT INTO loose SELECT * FROM audit_events`)
			mustExec(t, db, `DROP TABLE audit_events`)
			mustExec(t, db, `ALTER TABLE loose RENAME TO audit_events`)
			mustExec(t, db, `UPDATE audit_events SET `+c.set+` WHERE idx = 11`)
			_, err := audit.Verify(ctx, db, l.VerifierKey(), nil)
			var te *audit.TamperError
			if !errors.As(err, &te) || te.Index != 11 || !strings.Contains(te.Msg, c.column) {
				t.Fatalf("verify after %s: %v", c.set, err)
			}
		})
	}
}
