package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"aidants/audit"
	"aidants/store"
	"aidants/store/pgcluster"
)

// benchOrigin names the benchmark logs and their key.
const benchOrigin = "bench.aidants.invalid/audit"

// benchKey signs the benchmark logs; it is kept in the cache with the
// fixtures it signed.
var benchKey string

func loadBenchKey(cache string) (string, error) {
	path := filepath.Join(cache, "bench-audit.key")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	k, err := audit.GenerateKey(benchOrigin)
	if err != nil {
		return "", err
	}
	return k, os.WriteFile(path, []byte(k+"\n"), 0o600)
}

// writeResult is one write measurement.
type writeResult struct {
	writes   int64
	elapsed  time.Duration
	p50, p99 time.Duration
	batches  int64
}

func (w writeResult) rate() float64 { return float64(w.writes) / w.elapsed.Seconds() }

// openBench opens a fresh, migrated database with the benchmark's table.
func openBench(ctx context.Context, driver, dsn, sync string) (*store.DB, error) {
	db, err := store.Open(ctx, driver, dsn, store.Options{Synchronous: sync})
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	// The state change each audited write makes, beside its event.
	if _, err := db.W.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS bench_items (
		id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, created_at BIGINT NOT NULL)`); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// benchEvent is a realistic event: an authorization code issued for a
// person under a mandate (mandate.used), with pseudonymous ids.
func benchEvent(i int64) audit.Event {
	aid := fmt.Sprintf("aid_%026d", i%5000)
	return audit.Event{
		Type: audit.MandateUsed, Actor: audit.Actor{Kind: audit.ActorAidant, ID: aid}, Aidant: aid,
		Organisation: fmt.Sprintf("org_%026d", i%800), Usager: fmt.Sprintf("usa_%026d", i%200000),
		Mandate: fmt.Sprintf("man_%026d", i%300000), Service: "svc_impots", Demarches: []string{"argent"},
	}
}

// oneWrite is the unit every writer submits: one state change, one event.
// Its data is prepared by the caller, as a request handler would.
func oneWrite(id string, i int64) func(*audit.Tx) error {
	ev := benchEvent(i)
	return func(tx *audit.Tx) error {
		if _, err := tx.Exec(`INSERT INTO bench_items (id, organisation_id, created_at) VALUES (?, ?, ?)`,
			id, ev.Organisation, tx.Now().UnixMilli()); err != nil {
			return err
		}
		_, err := tx.Append(ev)
		return err
	}
}

// measureWrites runs `writers` goroutines, each submitting one audited
// write after the other, for d, through a log opened with maxBatch.
func measureWrites(ctx context.Context, db *store.DB, writers, maxBatch int, d time.Duration) (writeResult, error) {
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: benchKey, MaxBatch: maxBatch})
	if err != nil {
		return writeResult{}, err
	}
	defer l.Close()
	var total atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, writers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				t0 := time.Now()
				n := total.Add(1)
				if err := l.Write(ctx, oneWrite(store.NewID("bi"), n)); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return writeResult{}, err
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return writeResult{writes: int64(len(all)), elapsed: elapsed, p50: pct(all, 50), p99: pct(all, 99),
		batches: l.Stats().Batches.Load()}, ctx.Err()
}

// measureCeiling inserts the same rows in bulk — 1,000 state changes and
// events per unit, one writer, synchronous=NORMAL — to show what the
// machine can do with no durability wait and no per-write overhead.
func measureCeiling(ctx context.Context, db *store.DB, d time.Duration) (writeResult, error) {
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: benchKey})
	if err != nil {
		return writeResult{}, err
	}
	defer l.Close()
	const per = 1000
	start := time.Now()
	var n int64
	for time.Since(start) < d && ctx.Err() == nil {
		base := n
		err := l.Write(ctx, func(tx *audit.Tx) error {
			for i := base; i < base+per; i++ {
				if err := oneWrite(store.NewID("bi"), i)(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return writeResult{}, err
		}
		n += per
	}
	return writeResult{writes: n, elapsed: time.Since(start), batches: l.Stats().Batches.Load()}, ctx.Err()
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := len(sorted) * p / 100
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// measureOwnTransactions is the naive design: every writer runs each write
// in its own transaction on its own connection, with no writer to group
// them (one audit.Log per writer, batches of one), as an application
// without a group-committing writer would. Writers wait for the database's
// write lock (SQLite's busy handler, PostgreSQL's row lock on the head).
func measureOwnTransactions(ctx context.Context, open func() (*store.DB, error), writers int, d time.Duration) (writeResult, error) {
	logs := make([]*audit.Log, writers)
	for i := range logs {
		db, err := open()
		if err != nil {
			return writeResult{}, err
		}
		defer db.Close()
		if logs[i], err = audit.Open(ctx, db, audit.Options{SigningKey: benchKey, MaxBatch: 1}); err != nil {
			return writeResult{}, err
		}
		defer logs[i].Close()
	}
	var total atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				n := total.Add(1)
				if err := logs[w].Write(ctx, oneWrite(store.NewID("bi"), n)); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return writeResult{}, err
	}
	var writes int64
	for _, l := range logs {
		writes += l.Stats().Units.Load()
	}
	return writeResult{writes: writes, elapsed: time.Since(start)}, ctx.Err()
}

type writeRow struct {
	engine         string
	writers        int
	batched, naive writeResult
	own            writeResult // each writer its own transaction and connection
}

// median returns the result with the median rate.
func median(rs []writeResult) writeResult {
	sort.Slice(rs, func(i, j int) bool { return rs[i].rate() < rs[j].rate() })
	return rs[len(rs)/2]
}

// engine measures one database engine: fresh databases from newDB, the
// three configurations interleaved for o.rounds rounds (the disk of a
// virtual machine drifts over minutes), medians kept.
func measureEngine(ctx context.Context, o options, name string, newDB func() (driver, dsn string, err error), r *report) error {
	for _, w := range o.writers {
		row := writeRow{engine: name, writers: w}
		var batched, naive, own []writeResult
		for range o.rounds {
			for _, m := range []struct {
				res      *[]writeResult
				maxBatch int
			}{{&batched, 1024}, {&naive, 1}} {
				driver, dsn, err := newDB()
				if err != nil {
					return err
				}
				db, err := openBench(ctx, driver, dsn, "FULL")
				if err != nil {
					return err
				}
				res, err := measureWrites(ctx, db, w, m.maxBatch, o.seconds)
				db.Close()
				if err != nil {
					return fmt.Errorf("%s writes: %w", name, err)
				}
				*m.res = append(*m.res, res)
			}
			driver, dsn, err := newDB()
			if err != nil {
				return err
			}
			if db, err := openBench(ctx, driver, dsn, "FULL"); err != nil {
				return err
			} else {
				db.Close()
			}
			res, err := measureOwnTransactions(ctx, func() (*store.DB, error) {
				return store.Open(ctx, driver, dsn, store.Options{MaxOpenConns: 1, NoCheckpointer: true})
			}, w, o.seconds)
			if err != nil {
				return fmt.Errorf("%s own transactions: %w", name, err)
			}
			own = append(own, res)
		}
		row.batched, row.naive, row.own = median(batched), median(naive), median(own)
		logf("%s %3d writers: batched %8.0f/s (p99 %v), batches of one %7.0f/s, naive %7.0f/s (medians of %d)",
			name, w, row.batched.rate(), row.batched.p99, row.naive.rate(), row.own.rate(), o.rounds)
		r.writes = append(r.writes, row)
	}
	return nil
}

func benchWrites(ctx context.Context, o options, r *report) error {
	dir, err := os.MkdirTemp(o.cache, "writes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	n := 0
	sqlitePath := func() (string, string, error) {
		n++
		return "sqlite", filepath.Join(dir, fmt.Sprintf("w%d.db", n)), nil
	}
	if err := measureEngine(ctx, o, "SQLite (WAL, synchronous=FULL)", sqlitePath, r); err != nil {
		return err
	}
	var ceilings []writeResult
	for range o.rounds {
		_, path, _ := sqlitePath()
		db, err := openBench(ctx, "sqlite", path, "NORMAL")
		if err != nil {
			return err
		}
		res, err := measureCeiling(ctx, db, o.seconds)
		db.Close()
		if err != nil {
			return fmt.Errorf("ceiling: %w", err)
		}
		ceilings = append(ceilings, res)
	}
	r.ceiling = median(ceilings)
	logf("sqlite ceiling (bulk, synchronous=NORMAL): %.0f/s", r.ceiling.rate())
	r.rssAfterWrites = peakRSS()

	if !o.postgres {
		return nil
	}
	if !pgcluster.Available() {
		r.notes = append(r.notes, "PostgreSQL was not measured: initdb is not on PATH.")
		return nil
	}
	c, err := pgcluster.Start(pgcluster.Options{Durable: true})
	if err != nil {
		return err
	}
	defer c.Stop()
	pgDB := func() (string, string, error) {
		n++
		dsn, err := c.CreateDatabase(fmt.Sprintf("bench%d", n))
		return "postgres", dsn, err
	}
	return measureEngine(ctx, o, "PostgreSQL 15 (fsync on, synchronous_commit on)", pgDB, r)
}
