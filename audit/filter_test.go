package audit_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

func TestQueryFiltersAndScope(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		l, _ := openLog(t, db)
		ctx := context.Background()
		op := audit.Actor{Kind: audit.ActorOperator, ID: "test"}
		evs := []audit.Event{
			{Type: audit.MandateUsed, Actor: op, Organisation: "org_a", Service: "svc_1", Usager: "usa_1", Demarches: []string{"argent"}},
			{Type: audit.MandateUsed, Actor: op, Organisation: "org_b", Service: "svc_2", Usager: "usa_2", Demarches: []string{"social", "logement"}},
			{Type: audit.TokenIssued, Actor: op, Organisation: "org_a", Service: "svc_2", Usager: "usa_1", Demarches: []string{"social"}},
			{Type: audit.KeysRotated, Actor: op},
		}
		for _, e := range evs {
			if err := l.Write(ctx, func(tx *audit.Tx) error { _, err := tx.Append(e); return err }); err != nil {
				t.Fatal(err)
			}
		}
		indexes := func(f audit.Filter, after int64, limit int) []int64 {
			var out []int64
			if err := l.Query(ctx, f, after, limit, func(e audit.Entry) error { out = append(out, e.Index); return nil }); err != nil {
				t.Fatal(err)
			}
			return out
		}
		cases := []struct {
			name  string
			f     audit.Filter
			after int64
			limit int
			want  string
		}{
			{"everything", audit.Filter{}, -1, 0, "[0 1 2 3]"},
			{"after and limit", audit.Filter{}, 0, 2, "[1 2]"},
			{"organisation", audit.Filter{Organisation: "org_a"}, -1, 0, "[0 2]"},
			{"démarche", audit.Filter{Demarche: "social"}, -1, 0, "[1 2]"},
			{"not a prefix of another démarche", audit.Filter{Demarche: "soc"}, -1, 0, "[]"},
			{"type and usager", audit.Filter{Type: audit.MandateUsed, Usager: "usa_1"}, -1, 0, "[0]"},
			{"scope: organisation a", audit.Filter{Restricted: true, Organisations: []string{"org_a"}}, -1, 0, "[0 2]"},
			{"scope: a or service 2", audit.Filter{Restricted: true, Organisations: []string{"org_a"}, Services: []string{"svc_2"}}, -1, 0, "[0 1 2]"},
			{"scope and a filter outside it", audit.Filter{Organisation: "org_b", Restricted: true, Organisations: []string{"org_a"}}, -1, 0, "[]"},
			{"an empty scope", audit.Filter{Restricted: true}, -1, 0, "[]"},
			{"from the future", audit.Filter{From: time.Now().Add(time.Hour)}, -1, 0, "[]"},
			{"newest first", audit.Filter{Newest: true}, -1, 3, "[3 2 1]"},
			{"newest first, below 2", audit.Filter{Newest: true, Organisation: "org_a"}, 2, 0, "[0]"},
			{"until the future", audit.Filter{To: time.Now().Add(time.Hour)}, -1, 0, "[0 1 2 3]"},
		}
		for _, c := range cases {
			if got := fmt.Sprint(indexes(c.f, c.after, c.limit)); got != c.want {
				t.Errorf("%s: %s, want %s", c.name, got, c.want)
			}
		}
	})
}

// TestQueryMemoryDoesNotGrowWithTheResult: reading 100,000 events keeps a
// few chunks in memory, not the result.
func TestQueryMemoryDoesNotGrowWithTheResult(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100,000 events")
	}
	db := storetest.Open(t, store.SQLite)
	l, _ := openLog(t, db)
	ctx := context.Background()
	op := audit.Actor{Kind: audit.ActorOperator, ID: "test"}
	const n, per = 100_000, 1000
	for i := 0; i < n; i += per {
		err := l.Write(ctx, func(tx *audit.Tx) error {
			for j := 0; j < per; j++ {
				if _, err := tx.Append(audit.Event{Type: audit.MandateUsed, Actor: op, Organisation: "org_a", Usager: fmt.Sprintf("usa_%d", i+j),
					Detail: map[string]any{"padding": fmt.Sprintf("%0200d", i+j)}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	count, bytes := 0, 0
	err := l.Query(ctx, audit.Filter{Organisation: "org_a"}, -1, 0, func(e audit.Entry) error {
		count++
		bytes += len(e.Body)
		if count%5000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
		return nil
	})
	if err != nil || count != n {
		t.Fatalf("query: %d events, %v", count, err)
	}
	grew := int64(peak) - int64(base)
	t.Logf("%d events, %d MB of bodies read; heap grew by at most %.1f MB", count, bytes>>20, float64(grew)/(1<<20))
	// Keeping the result would grow the heap by at least bytes; half of
	// it leaves room for a collector that lags on a loaded machine.
	if grew > int64(bytes)/2 {
		t.Errorf("the heap grew by %d bytes while reading %d bytes of events: the result is being kept", grew, bytes)
	}
}
