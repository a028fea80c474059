package audit_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

// BenchmarkWrite256 measures durable audited writes from 256 concurrent
// writers on SQLite (WAL, synchronous=FULL): one state change and one
// event per write. `make bench` reports the same, with baselines.
func BenchmarkWrite256(b *testing.B) {
	// AIDANTS_BENCH_SYNC=OFF takes the disk out, to compare CPU costs.
	driver, dsn := storetest.DSN(b, store.SQLite)
	db, err := store.Open(context.Background(), driver, dsn, store.Options{Synchronous: os.Getenv("AIDANTS_BENCH_SYNC")})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	if _, err := db.W.Exec(`CREATE TABLE bench_items (id TEXT PRIMARY KEY, org TEXT NOT NULL, at BIGINT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	l, _ := openLog(b, db)
	var n atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := n.Add(1)
				if i > int64(b.N) {
					return
				}
				// The caller prepares the unit's data, as a handler would.
				id, aid := store.NewID("bi"), fmt.Sprintf("aid_%026d", i%5000)
				ev := audit.Event{Type: audit.MandateUsed, Actor: audit.Actor{Kind: audit.ActorAidant, ID: aid},
					Aidant: aid, Organisation: fmt.Sprintf("org_%026d", i%800), Usager: fmt.Sprintf("usa_%026d", i%200000),
					Mandate: fmt.Sprintf("man_%026d", i%300000), Service: "svc_impots", Demarches: []string{"argent"}}
				err := l.Write(context.Background(), func(tx *audit.Tx) error {
					if _, err := tx.Exec(`INSERT INTO bench_items (id, org, at) VALUES (?, ?, ?)`, id, ev.Organisation, i); err != nil {
						return err
					}
					_, err := tx.Append(ev)
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	st := l.Stats()
	b.ReportMetric(float64(st.UnitNanos.Load())/float64(b.N), "units-ns/w")
	b.ReportMetric(float64(st.AppendNanos.Load())/float64(b.N), "append-ns/w")
	b.ReportMetric(float64(st.CommitNanos.Load())/float64(b.N), "commit-ns/w")
	b.ReportMetric(float64(st.Units.Load())/float64(st.Batches.Load()), "units/batch")
}
