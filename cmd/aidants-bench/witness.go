package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"aidants/audit"
	"aidants/store"
	"aidants/witness"
	"aidants/witness/litewitnesstest"
)

// witnessResult compares durable writes with and without two witnesses
// (SPEC §10: ≥ 0.95×), and measures how long a write waits for its first
// witnessed checkpoint.
type witnessResult struct {
	without, with      writeResult
	interval           time.Duration
	delayP50, delayP99 time.Duration
	delays             int
	witnessed          int64 // checkpoints witnessed during the runs
	refused, failed    int64
}

// benchTB lets the benchmark command start litewitness with the tests'
// helper: cleanups run at the end of the run, a fatal error stops it.
type benchTB struct {
	mu       sync.Mutex
	cleanups []func()
	dir      string
	failed   bool
}

func (b *benchTB) Helper()                         {}
func (b *benchTB) Logf(format string, args ...any) { logf(format, args...) }
func (b *benchTB) Fatalf(format string, args ...any) {
	b.failed = true
	panic(fmt.Errorf(format, args...))
}
func (b *benchTB) Skipf(format string, args ...any) { b.Fatalf(format, args...) }
func (b *benchTB) Failed() bool                     { return b.failed }
func (b *benchTB) Cleanup(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleanups = append(b.cleanups, f)
}
func (b *benchTB) TempDir() string {
	d, err := os.MkdirTemp(b.dir, "lw-")
	if err != nil {
		b.Fatalf("%v", err)
	}
	return d
}
func (b *benchTB) close() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
}

// benchWitnessing measures, on SQLite with 256 writers, the write rate
// with the witnessing service sending checkpoints to two local litewitness
// processes against the same without, interleaved for o.rounds rounds.
func benchWitnessing(ctx context.Context, o options, r *report) (err error) {
	dir, err := os.MkdirTemp(o.cache, "witness-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tb := &benchTB{dir: dir}
	defer tb.close()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("litewitness: %v", p)
		}
	}()
	ws := []*litewitnesstest.Witness{
		litewitnesstest.Start(tb, "witness-1.bench.invalid", nil),
		litewitnesstest.Start(tb, "witness-2.bench.invalid", nil),
	}
	// The configuration's default interval; each run long enough for
	// several rounds.
	res := witnessResult{interval: 2 * time.Second}
	d := max(o.seconds, 8*time.Second)
	var without, with []writeResult
	var delays []time.Duration
	const writers = 256
	for round := range o.rounds {
		for _, witnessed := range []bool{false, true} {
			path := filepath.Join(dir, fmt.Sprintf("w%d-%v.db", round, witnessed))
			db, err := openBench(ctx, "sqlite", path, "FULL")
			if err != nil {
				return err
			}
			// Each run is a new log, hence a new origin for the witnesses.
			key, err := audit.GenerateKey(fmt.Sprintf("bench.aidants.invalid/witnessed/%d-%v", round, witnessed))
			if err != nil {
				return err
			}
			var wr writeResult
			var ds []time.Duration
			if witnessed {
				wr, ds, err = measureWitnessed(ctx, db, key, ws, res.interval, filepath.Join(dir, fmt.Sprintf("state-%d", round)), d, &res)
			} else {
				wr, _, err = measureWitnessed(ctx, db, key, nil, 0, "", d, &res)
			}
			db.Close()
			if err != nil {
				return err
			}
			if witnessed {
				with, delays = append(with, wr), append(delays, ds...)
			} else {
				without = append(without, wr)
			}
		}
	}
	res.without, res.with = median(without), median(with)
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	res.delays, res.delayP50, res.delayP99 = len(delays), pct(delays, 50), pct(delays, 99)
	logf("writes with two witnesses: %.0f/s against %.0f/s without (%.2f×); a write's first witnessed checkpoint after p50 %v, p99 %v (%d writes, interval %v)",
		res.with.rate(), res.without.rate(), res.with.rate()/res.without.rate(), res.delayP50, res.delayP99, res.delays, res.interval)
	r.witness = &res
	return nil
}

// measureWitnessed runs the 256 writers for d on db; with witnesses, the
// witnessing service runs beside them, as in serve, and each write's wait
// for its first witnessed checkpoint is returned.
func measureWitnessed(ctx context.Context, db *store.DB, key string, ws []*litewitnesstest.Witness, interval time.Duration, state string, d time.Duration, res *witnessResult) (writeResult, []time.Duration, error) {
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: key})
	if err != nil {
		return writeResult{}, nil, err
	}
	defer l.Close()
	type witnessedAt struct {
		size int64
		at   time.Time
	}
	var mu sync.Mutex
	var seen []witnessedAt
	stopWitnessing := func() {}
	var svc *witness.Service
	if len(ws) > 0 {
		vkey, _ := audit.VerifierKey(key)
		cfg := witness.Config{Quorum: len(ws), Interval: interval, StateFile: state,
			OnWitnessed: func(size int64, at time.Time) {
				mu.Lock()
				seen = append(seen, witnessedAt{size, at})
				mu.Unlock()
			}}
		for _, w := range ws {
			w.AddLog(&benchTB{}, l.Origin(), vkey)
			v, err := witness.ParseVerifierKey(w.VKey)
			if err != nil {
				return writeResult{}, nil, err
			}
			cfg.Witnesses = append(cfg.Witnesses, witness.Endpoint{URL: w.URL, Verifier: v})
		}
		if svc, err = witness.New(l, cfg); err != nil {
			return writeResult{}, nil, err
		}
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); svc.Run(wctx) }()
		stopWitnessing = func() { cancel(); <-done }
	}
	type committed struct {
		idx int64
		at  time.Time
	}
	const writers = 256
	var total atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, writers)
	commits := make([][]committed, writers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				n := total.Add(1)
				ev := benchEvent(n)
				id := store.NewID("bi")
				var idx int64
				err := l.Write(ctx, func(tx *audit.Tx) error {
					if _, err := tx.Exec(`INSERT INTO bench_items (id, organisation_id, created_at) VALUES (?, ?, ?)`, id, ev.Organisation, tx.Now().UnixMilli()); err != nil {
						return err
					}
					var err error
					idx, err = tx.Append(ev)
					return err
				})
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				now := time.Now()
				lat[w] = append(lat[w], now.Sub(t0))
				commits[w] = append(commits[w], committed{idx, now})
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		stopWitnessing()
		return writeResult{}, nil, err
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	wr := writeResult{writes: int64(len(all)), elapsed: elapsed, p50: pct(all, 50), p99: pct(all, 99), batches: l.Stats().Batches.Load()}
	if svc == nil {
		return wr, nil, nil
	}
	// Let the last writes be witnessed, then match each write with the
	// first witnessed checkpoint that covers it.
	last := total.Load()
	for wait := time.Now().Add(5 * interval); time.Now().Before(wait); time.Sleep(interval / 10) {
		mu.Lock()
		done := len(seen) > 0 && seen[len(seen)-1].size >= last
		mu.Unlock()
		if done {
			break
		}
	}
	stopWitnessing()
	st := svc.Stats()
	res.witnessed += st.Witnessed.Load()
	for i := range st.Refused {
		res.refused += st.Refused[i].Load()
		res.failed += st.Failed[i].Load()
	}
	var delays []time.Duration
	for _, cs := range commits {
		for _, c := range cs {
			k := sort.Search(len(seen), func(i int) bool { return seen[i].size > c.idx })
			if k < len(seen) {
				delays = append(delays, seen[k].at.Sub(c.at))
			}
		}
	}
	return wr, delays, nil
}
