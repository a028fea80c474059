package stats

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

// TestStatsReadTheJournalFromTheWindowsFirstPosition: the actions are read
// from the first position of the journal whose time is in the window (less
// the margin), found by bisection, not from the whole history; and what
// is before it is not counted.
func TestStatsReadTheJournalFromTheWindowsFirstPosition(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		skey, _ := audit.GenerateKey("stats.test.invalid/audit")
		l, err := audit.Open(ctx, db, audit.Options{SigningKey: skey, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		now := time.Now()
		var firstRecent int64 = -1
		err = l.Write(ctx, func(tx *audit.Tx) error {
			for i := 0; i < 37; i++ { // two years of history, then this month
				at := now.AddDate(-2, 0, 0).Add(time.Duration(i) * 24 * time.Hour)
				if i >= 30 {
					at = now.Add(-time.Duration(40-i) * time.Minute)
				}
				idx, err := tx.Append(audit.Event{Type: audit.MandateUsed, Time: audit.Time{Time: at}, Actor: audit.Actor{Kind: audit.ActorAidant, ID: "aid_1"},
					Aidant: "aid_1", Organisation: "org_1", Usager: "usa_1", Mandate: "man_1", Service: "svc_1", Demarches: []string{"argent"}})
				if i == 30 {
					firstRecent = idx
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		starts, _ := Window(now)
		got, err := firstIndex(ctx, db, starts[0])
		if err != nil || got != firstRecent {
			t.Fatalf("first position %d (%v), want %d", got, err, firstRecent)
		}
		for _, o := range []string{"org_1", ""} {
			r, err := Compute(ctx, db, o, now)
			if err != nil || r.Actions() != 7 {
				t.Errorf("%q: %d actions (%v), want 7", o, r.Actions(), err)
			}
		}
	})
}
