package audit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	storetest.Main(m)
}

const origin = "test.aidants.invalid/audit"

func openLog(t testing.TB, db *store.DB) (*audit.Log, string) {
	t.Helper()
	skey, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil)) // units panic on purpose
	l, err := audit.Open(context.Background(), db, audit.Options{SigningKey: skey, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, skey
}

func ev(i int) audit.Event {
	return audit.Event{Type: audit.AidantLogin, Actor: audit.Actor{Kind: audit.ActorAidant, ID: fmt.Sprintf("aid_%d", i)},
		Aidant: fmt.Sprintf("aid_%d", i), Organisation: "org_1"}
}

// appendN writes n events from 16 goroutines and returns their indexes.
func appendN(t testing.TB, l *audit.Log, n int) []int64 {
	t.Helper()
	idx := make([]int64, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				err := l.Write(context.Background(), func(tx *audit.Tx) error {
					var err error
					idx[i], err = tx.Append(ev(i))
					return err
				})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return idx
}

func TestConcurrentWritesMakeOneVerifiableHistory(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		l, skey := openLog(t, db)
		idx := appendN(t, l, 300)
		seen := map[int64]bool{}
		for _, i := range idx {
			if seen[i] || i < 0 || i >= 300 {
				t.Fatalf("index %d given twice or out of range", i)
			}
			seen[i] = true
		}
		vkey, _ := audit.VerifierKey(skey)
		res, err := audit.Verify(context.Background(), db, vkey, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Size != 300 {
			t.Fatalf("verified size %d, want 300", res.Size)
		}
		cp, err := l.Latest(context.Background())
		if err != nil || cp.Size != 300 || cp.Root != res.Root {
			t.Fatalf("latest checkpoint %+v, %v; want size 300 and the recomputed root", cp, err)
		}
		// The recomputation agrees with tlog's own tree hash.
		root, err := tlog.TreeHash(300, tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(ids))
			for i, id := range ids {
				var h []byte
				if err := db.R.Get(&h, db.Rebind(`SELECT hash FROM audit_hashes WHERE id = ?`), id); err != nil {
					return nil, err
				}
				copy(out[i][:], h)
			}
			return out, nil
		}))
		if err != nil || root != res.Root {
			t.Fatalf("tlog.TreeHash = %v, %v; verify computed %v", root, err, res.Root)
		}
	})
}

func TestFailingUnitIsRolledBackAloneAndGetsItsError(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		l, _ := openLog(t, db)
		boom := errors.New("boom")
		var wg sync.WaitGroup
		results := make([]error, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = l.Write(context.Background(), func(tx *audit.Tx) error {
					if _, err := tx.Exec(`INSERT INTO instance_meta (key, value) VALUES (?, ?)`, fmt.Sprintf("k%d", i), "v"); err != nil {
						return err
					}
					if _, err := tx.Append(ev(i)); err != nil {
						return err
					}
					if i%4 == 0 {
						return boom
					}
					if i%4 == 1 {
						panic("unit panics")
					}
					return nil
				})
			}()
		}
		wg.Wait()
		for i, err := range results {
			switch i % 4 {
			case 0:
				if !errors.Is(err, boom) {
					t.Errorf("unit %d: err = %v, want boom", i, err)
				}
			case 1:
				if err == nil || !strings.Contains(err.Error(), "panicked") {
					t.Errorf("unit %d: err = %v, want a panic error", i, err)
				}
			default:
				if err != nil {
					t.Errorf("unit %d: %v", i, err)
				}
			}
		}
		var rows, events int
		db.R.Get(&rows, `SELECT COUNT(*) FROM instance_meta`)
		db.R.Get(&events, `SELECT COUNT(*) FROM audit_events`)
		if rows != 20 || events != 20 {
			t.Fatalf("rows = %d, events = %d; want 20 and 20 (failed units leave nothing)", rows, events)
		}
		if _, err := audit.Verify(context.Background(), db, l.VerifierKey(), nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestEventsAreCanonicalAndChecked(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	l, _ := openLog(t, db)
	err := l.Write(context.Background(), func(tx *audit.Tx) error {
		_, err := tx.Append(audit.Event{Type: "made.up", Actor: audit.Actor{Kind: audit.ActorSystem, ID: "x"}})
		return err
	})
	if err == nil {
		t.Fatal("an unknown event type was accepted")
	}
	err = l.Write(context.Background(), func(tx *audit.Tx) error {
		e := ev(1)
		e.Demarches = []string{"argent", "social"}
		e.Detail = map[string]any{"zeta": 1, "alpha": "<b>"}
		_, err := tx.Append(e)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var body string
	db.R.Get(&body, `SELECT body FROM audit_events WHERE idx = 0`)
	want := `{"actor":{"id":"aid_1","kind":"aidant"},"aidant":"aid_1","demarches":["argent","social"],"detail":{"alpha":"<b>","zeta":1},"organisation":"org_1","time":"`
	if !strings.HasPrefix(body, want) || !strings.HasSuffix(body, `Z","type":"aidant.login"}`) {
		t.Fatalf("body = %s", body)
	}
}

func TestTriggersRefuseUpdateAndDelete(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		l, _ := openLog(t, db)
		appendN(t, l, 3)
		for _, q := range []string{
			`UPDATE audit_events SET body = body WHERE idx = 1`,
			`DELETE FROM audit_events WHERE idx = 2`,
			`UPDATE audit_hashes SET hash = hash WHERE id = 0`,
			`DELETE FROM audit_hashes WHERE id = 0`,
			`UPDATE audit_checkpoints SET note = note`,
			`DELETE FROM audit_checkpoints`,
		} {
			if _, err := db.W.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Errorf("%s: err = %v, want append-only refusal", q, err)
			}
		}
		if db.Dialect == store.Postgres {
			for _, table := range []string{"audit_events", "audit_hashes", "audit_checkpoints"} {
				if _, err := db.W.Exec(`TRUNCATE ` + table); err == nil {
					t.Errorf("TRUNCATE %s succeeded", table)
				}
			}
		}
		if _, err := audit.Verify(context.Background(), db, l.VerifierKey(), nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestProofsVerifyAgainstSignedCheckpoint(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _ := openLog(t, db)
		appendN(t, l, 37)
		latest, err := l.Latest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := audit.ParseCheckpoint(latest.Note, l.VerifierKey())
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int64{0, 1, 17, 36} {
			p, err := l.Inclusion(ctx, i, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckRecord(p.Hashes, cp.Size, cp.Root, i, p.LeafHash); err != nil {
				t.Fatalf("inclusion of %d: %v", i, err)
			}
		}
		for _, old := range []int64{1, 5, 16, 37} {
			p, err := l.Consistency(ctx, old, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			var oldRoot tlog.Hash
			oldRoot, err = tlog.TreeHash(old, dbHashes{db})
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckTree(p.Hashes, cp.Size, cp.Root, old, oldRoot); err != nil {
				t.Fatalf("consistency %d→%d: %v", old, cp.Size, err)
			}
		}
		for _, bad := range [][2]int64{{-1, 37}, {37, 37}, {0, 38}, {0, 0}} {
			_, err := l.Inclusion(ctx, bad[0], bad[1])
			var br *audit.ErrBadRange
			if !errors.As(err, &br) {
				t.Errorf("Inclusion(%d, %d): err = %v, want ErrBadRange", bad[0], bad[1], err)
			}
		}
		for _, bad := range [][2]int64{{0, 37}, {38, 38}, {5, 4}} {
			_, err := l.Consistency(ctx, bad[0], bad[1])
			var br *audit.ErrBadRange
			if !errors.As(err, &br) {
				t.Errorf("Consistency(%d, %d): err = %v, want ErrBadRange", bad[0], bad[1], err)
			}
		}
	})
}

type dbHashes struct{ db *store.DB }

func (r dbHashes) ReadHashes(ids []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ids))
	for i, id := range ids {
		var h []byte
		if err := r.db.R.Get(&h, r.db.Rebind(`SELECT hash FROM audit_hashes WHERE id = ?`), id); err != nil {
			return nil, err
		}
		copy(out[i][:], h)
	}
	return out, nil
}

func TestReopenContinuesTheSameTree(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	skey, _ := audit.GenerateKey(origin)
	for round := range 3 {
		l, err := audit.Open(context.Background(), db, audit.Options{SigningKey: skey})
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, l, 13+round)
		l.Close()
	}
	vkey, _ := audit.VerifierKey(skey)
	res, err := audit.Verify(context.Background(), db, vkey, nil)
	if err != nil || res.Size != 13+14+15 {
		t.Fatalf("verify = %+v, %v", res, err)
	}
}

func TestTwoLogsOnOneDatabaseKeepOneHistory(t *testing.T) {
	// Two writers on one database stand for the command line beside the
	// server (SQLite) or two servers (PostgreSQL).
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		driver, dsn := string(db.Dialect), ""
		if db.Dialect == store.SQLite {
			dsn = db.Path
		} else {
			t.Skip("covered by the two-process PostgreSQL test")
		}
		db2, err := store.Open(context.Background(), driver, dsn, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db2.Close()
		skey, _ := audit.GenerateKey(origin)
		l1, err := audit.Open(context.Background(), db, audit.Options{SigningKey: skey})
		if err != nil {
			t.Fatal(err)
		}
		l2, err := audit.Open(context.Background(), db2, audit.Options{SigningKey: skey})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, l := range []*audit.Log{l1, l2} {
			wg.Add(1)
			go func() { defer wg.Done(); appendN(t, l, 100) }()
		}
		wg.Wait()
		l1.Close()
		l2.Close()
		vkey, _ := audit.VerifierKey(skey)
		res, err := audit.Verify(context.Background(), db, vkey, nil)
		if err != nil || res.Size != 200 {
			t.Fatalf("verify = %+v, %v", res, err)
		}
	})
}
