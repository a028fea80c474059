package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

func writeEvents(t *testing.T, l *audit.Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		err := l.Write(context.Background(), func(tx *audit.Tx) error {
			e := ev(i)
			e.Usager = "usa_p"
			_, err := tx.Append(e)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func openWith(t *testing.T, db *store.DB, skey string) (*audit.Log, error) {
	t.Helper()
	l, err := audit.Open(context.Background(), db, audit.Options{SigningKey: skey})
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, err
}

// TestDatabaseBehindOrForkedIsRefused plays an older backup restored (the
// database behind what was witnessed) and another history under the same
// key (a fork): CheckState refuses both, saying what it found and what to
// do, and a refused log appends nothing.
func TestDatabaseBehindOrForkedIsRefused(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			live := storetest.Open(t, d)
			l, skey := openLog(t, live)
			writeEvents(t, l, 0, 50)
			witnessed, _ := l.Latest(ctx)
			state := filepath.Join(t.TempDir(), "witness-state")
			if err := audit.WriteStateFile(state, witnessed.Note); err != nil {
				t.Fatal(err)
			}
			kept, _ := audit.ReadStateFile(state)
			if err := l.CheckState(ctx, kept, state); err != nil {
				t.Fatalf("the live database: %v", err)
			}

			// The same events up to 30: an older copy of the database.
			old := storetest.Open(t, d)
			lo, err := openWith(t, old, skey)
			if err != nil {
				t.Fatal(err)
			}
			writeEvents(t, lo, 0, 30)
			err = lo.CheckState(ctx, kept, state)
			var re *audit.RollbackError
			if !errors.As(err, &re) || !strings.Contains(re.Msg, "stops at 30 events") || !strings.Contains(re.Msg, "cosigned 50") ||
				!strings.Contains(re.Msg, "aidants audit new-origin") || strings.Contains(re.Msg, "\n") {
				t.Fatalf("behind: %v", err)
			}
			lo.Refuse(err)
			if werr := lo.Write(ctx, func(tx *audit.Tx) error { _, err := tx.Append(ev(99)); return err }); !errors.As(werr, &re) {
				t.Fatalf("a refused log wrote: %v", werr)
			}
			if res, err := audit.Verify(ctx, old, l.VerifierKey(), nil); err != nil || res.Size != 30 {
				t.Fatalf("the old copy stays readable and verifiable: %v %+v", err, res)
			}
			// audit verify given the kept checkpoint says the same.
			if _, err := audit.VerifyLog(ctx, old, l.VerifierKey(), witnessed); err == nil || !strings.Contains(err.Error(), "truncated") {
				t.Fatalf("verify against the kept checkpoint: %v", err)
			}

			// Another history of 60 events under the same key: a fork.
			forked := storetest.Open(t, d)
			lf, _ := openWith(t, forked, skey)
			writeEvents(t, lf, 100, 160)
			if err := lf.CheckState(ctx, kept, state); !errors.As(err, &re) || !strings.Contains(re.Msg, "another history") {
				t.Fatalf("fork: %v", err)
			}
			if _, err := audit.VerifyLog(ctx, forked, l.VerifierKey(), witnessed); err == nil || !strings.Contains(err.Error(), "history rewritten") {
				t.Fatalf("verify a fork against the kept checkpoint: %v", err)
			}
		})
	}
}

// TestNewOriginContinuesTheJournal is the documented recovery: the
// operator continues the journal under a new origin whose first event
// records where the old one stops and what its witnesses had cosigned.
func TestNewOriginContinuesTheJournal(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, skey := openLog(t, db)
		writeEvents(t, l, 0, 30)
		// What the witnesses had cosigned: 50 events, of which this
		// database (a restored backup) holds 30.
		other := storetest.Open(t, db.Dialect)
		lw, _ := openWith(t, other, skey)
		writeEvents(t, lw, 0, 50)
		witnessed, _ := lw.Latest(ctx)
		if err := l.CheckState(ctx, witnessed.Note, "state"); err == nil {
			t.Fatal("behind, yet accepted")
		}
		l.Close()

		newKey, _ := audit.GenerateKey("test.aidants.invalid/audit/2")
		if _, err := openWith(t, db, newKey); err == nil || !strings.Contains(err.Error(), "aidants audit new-origin") {
			t.Fatalf("opening with another origin's key: %v", err)
		}
		cp, start, err := audit.StartOrigin(ctx, db, newKey, audit.Previous{Witnessed: witnessed, Reason: "sauvegarde du 3 restaurée"}, time.Now())
		if err != nil || start != 30 || cp.Size != 1 {
			t.Fatalf("start origin: %v %d %+v", err, start, cp)
		}
		if _, _, err := audit.StartOrigin(ctx, db, newKey, audit.Previous{}, time.Now()); err == nil {
			t.Fatal("the same origin started twice")
		}
		if _, err := openWith(t, db, skey); err == nil {
			t.Fatal("the old origin's key still appends")
		}
		l2, err := openWith(t, db, newKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := l2.CheckState(ctx, witnessed.Note, "state"); err != nil {
			t.Fatalf("the new origin records the witnessed checkpoint: %v", err)
		}
		first, err := l2.At(ctx, 30, "")
		if err != nil || first.Event.Type != audit.AuditOriginStarted || first.Event.Detail["lost"] != json.Number("20") ||
			first.Event.Detail["previous_origin"] != origin || first.Event.Detail["witnessed_size"] != json.Number("50") {
			t.Fatalf("first event of the new origin: %v %+v", err, first)
		}
		writeEvents(t, l2, 200, 210)
		res, err := audit.VerifyLog(ctx, db, l2.VerifierKey(), witnessed)
		if err != nil || res.Size != 41 || res.Origins != 2 || res.Origin != "test.aidants.invalid/audit/2" {
			t.Fatalf("verify across origins: %v %+v", err, res)
		}
		// The old origin's events stay readable, and their receipts verify
		// with the old key; the new ones with the new key.
		for _, c := range []struct {
			idx  int64
			vkey string
			leaf int64
		}{{5, l.VerifierKey(), 5}, {35, l2.VerifierKey(), 5}} {
			r, err := l2.ReceiptFor(ctx, c.idx, "usa_p")
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(r)
			if _, err := audit.VerifyReceipt(raw, c.vkey, nil, 0); err != nil || r.Index != c.leaf {
				t.Fatalf("receipt of %d: %v, leaf %d", c.idx, err, r.Index)
			}
		}
		// The person's history spans both origins.
		mine, _ := l2.ForUsager(ctx, "usa_p", 0, 100)
		if len(mine) != 40 {
			t.Fatalf("history of %d events, want 40", len(mine))
		}
		// Rewriting what the new origin recorded is seen.
		l2.Close()
		dropAllTriggers(t, db)
		if db.Dialect == store.SQLite {
			mustExec(t, db, `UPDATE audit_events SET body = CAST(REPLACE(body, '"witnessed_size":50', '"witnessed_size":30') AS BLOB) WHERE idx = 30`)
		} else {
			mustExec(t, db, `UPDATE audit_events SET body = convert_to(replace(convert_from(body, 'UTF8'), '"witnessed_size":50', '"witnessed_size":30'), 'UTF8') WHERE idx = 30`)
		}
		if _, err := audit.VerifyLog(ctx, db, l2.VerifierKey(), witnessed); err == nil {
			t.Fatal("an edited origin_started event verified")
		}
	})
}

// TestNewOriginAfterAnEmptyOne is the recovery from a lost database: an
// empty database opened with the old key registers the old origin with no
// event, and the journal goes on under a new one; verify walks past the
// empty origin.
func TestNewOriginAfterAnEmptyOne(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _ := openLog(t, db)
		l.Close()
		newKey, _ := audit.GenerateKey("test.aidants.invalid/audit/2")
		if _, start, err := audit.StartOrigin(ctx, db, newKey, audit.Previous{Reason: "base perdue"}, time.Now()); err != nil || start != 0 {
			t.Fatalf("start origin: %v at %d", err, start)
		}
		l2, err := openWith(t, db, newKey)
		if err != nil {
			t.Fatal(err)
		}
		writeEvents(t, l2, 0, 300)
		res, err := audit.Verify(ctx, db, l2.VerifierKey(), nil)
		if err != nil || res.Size != 301 || res.Origins != 2 {
			t.Fatalf("verify: %v %+v", err, res)
		}
	})
}
