package audit_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

// TestWALStaysUnderItsBoundUnderSteadyLoad writes from 64 writers for 30
// seconds while readers keep reading the person's history (each holds a
// snapshot in the WAL, which is what kept it from ever being reset), and
// samples the WAL's size: it never passes its bound, and every write is
// there at the end.
func TestWALStaysUnderItsBoundUnderSteadyLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30-second load")
	}
	const limit = store.DefaultWALLimit
	ctx := context.Background()
	_, path := storetest.DSN(t, store.SQLite)
	db, err := store.Open(ctx, "sqlite", path, store.Options{WALLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	l, _ := openLog(t, db)
	deadline := time.Now().Add(30 * time.Second)
	var written atomic.Int64
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				err := l.Write(ctx, func(tx *audit.Tx) error {
					e := ev(i)
					e.Usager = fmt.Sprintf("usa_%d", w)
					_, err := tx.Append(e)
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				written.Add(1)
			}
		}()
	}
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := l.ForUsager(ctx, fmt.Sprintf("usa_%d", r), 0, 100); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var largest int64
	for time.Now().Before(deadline) {
		if st, err := os.Stat(path + "-wal"); err == nil && st.Size() > largest {
			largest = st.Size()
		}
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("%d writes in 30 s; the WAL was at most %.1f MB (bound %d MB)", written.Load(), float64(largest)/(1<<20), limit>>20)
	if largest > limit {
		t.Fatalf("the WAL grew to %d bytes, past its bound of %d", largest, limit)
	}
	var n int64
	if err := db.R.Get(&n, `SELECT COUNT(*) FROM audit_events`); err != nil || n != written.Load() {
		t.Fatalf("%d events for %d acknowledged writes (%v)", n, written.Load(), err)
	}
}
