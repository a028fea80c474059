package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"aidants/audit"
	"aidants/store"
)

// HotUsager is the person of the fixtures with many events: one event in a
// hundred is theirs (10,000 in a log of a million, 100,000 in ten million).
const HotUsager = "usa_hot000000000000000000000"

// fixtureVersion changes when the fixtures' content or schema changes.
const fixtureVersion = 6

// fixture returns the path of a SQLite log of n events, generating it
// through the real writer (synchronous=OFF, 10,000 events per unit) when
// the cache does not hold it yet.
func fixture(ctx context.Context, cache string, n int64) (string, error) {
	path := filepath.Join(cache, fmt.Sprintf("log-%d-v%d.db", n, fixtureVersion))
	if ok, err := fixtureComplete(ctx, path, n); err != nil {
		return "", err
	} else if ok {
		logf("fixture of %d events: cached in %s", n, path)
		return path, nil
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
	logf("fixture of %d events: generating %s (once; kept for later runs)", n, path)
	db, err := openBench(ctx, "sqlite", path, "OFF")
	if err != nil {
		return "", err
	}
	defer db.Close()
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: benchKey})
	if err != nil {
		return "", err
	}
	defer l.Close()
	start := time.Now()
	const per = 10000
	for base := int64(0); base < n; base += per {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		end := min(base+per, n)
		err := l.Write(ctx, func(tx *audit.Tx) error {
			for i := base; i < end; i++ {
				ev := benchEvent(i)
				if i%100 == 7 {
					ev.Usager = HotUsager
				}
				if _, err := tx.Append(ev); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		if base%(per*100) == 0 && base > 0 {
			logf("  %d events (%.0f/s)", base, float64(base)/time.Since(start).Seconds())
		}
	}
	err = l.Write(ctx, func(tx *audit.Tx) error {
		_, err := tx.Exec(`INSERT INTO instance_meta (key, value) VALUES ('bench_fixture', ?)`, strconv.FormatInt(n, 10))
		return err
	})
	if err != nil {
		return "", err
	}
	logf("fixture of %d events generated in %s", n, time.Since(start).Round(time.Second))
	return path, nil
}

func fixtureComplete(ctx context.Context, path string, n int64) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	db, err := store.Open(ctx, "sqlite", path, store.Options{})
	if err != nil {
		return false, nil
	}
	defer db.Close()
	var v string
	if err := db.R.GetContext(ctx, &v, `SELECT value FROM instance_meta WHERE key = 'bench_fixture'`); err != nil {
		return false, nil
	}
	return v == strconv.FormatInt(n, 10), nil
}

// logResult is what one fixture measured.
type logResult struct {
	size                   int64
	startup                time.Duration
	warm                   time.Duration // reading the file into the page cache
	incP50, incP99         time.Duration
	conP50, conP99         time.Duration
	verify                 time.Duration // every column checked (best of two)
	verifyBodies           time.Duration // bodies only, the baseline (best of two)
	hashTiles, entryTiles  tileRate
	historyP50, historyP99 time.Duration
	pageP50, pageP99       time.Duration
	historyEvents          int
	fileBytes              int64
	rssAfter               int64
}

// benchLog measures start-up, proofs and verification on a fixture.
func benchLog(ctx context.Context, path string, n int64, r *report) error {
	res := logResult{size: n}
	if st, err := os.Stat(path); err == nil {
		res.fileBytes = st.Size()
	}
	t0 := time.Now()
	db, err := store.Open(ctx, "sqlite", path, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		return err
	}
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: benchKey})
	if err != nil {
		return err
	}
	defer l.Close()
	cp, err := l.Latest(ctx)
	if err != nil {
		return err
	}
	res.startup = time.Since(t0)
	if cp.Size != n {
		return fmt.Errorf("fixture %s has %d events, want %d", path, cp.Size, n)
	}
	// The database file is read once, so that it sits in the page cache as
	// on a serving instance with memory to spare, whatever this machine
	// did before (start-up above is measured before that).
	if res.warm, err = readFile(path); err != nil {
		return err
	}
	logf("%d events: the database file read into the page cache in %s", n, res.warm.Round(time.Millisecond))
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	const samples = 20000
	// Warm up as a serving instance would be: the proof cache of high
	// tree levels fills, and the OS caches the pages proofs touch.
	for range samples {
		if _, err := l.Inclusion(ctx, rng.Int64N(n), n); err != nil {
			return err
		}
	}
	inc := make([]time.Duration, 0, samples)
	for range samples {
		i := rng.Int64N(n)
		t := time.Now()
		if _, err := l.Inclusion(ctx, i, n); err != nil {
			return err
		}
		inc = append(inc, time.Since(t))
	}
	con := make([]time.Duration, 0, samples)
	for range samples {
		old := 1 + rng.Int64N(n)
		t := time.Now()
		if _, err := l.Consistency(ctx, old, n); err != nil {
			return err
		}
		con = append(con, time.Since(t))
	}
	sortDur(inc)
	sortDur(con)
	res.incP50, res.incP99 = pct(inc, 50), pct(inc, 99)
	res.conP50, res.conP99 = pct(con, 50), pct(con, 99)
	logf("%d events: start-up %v; inclusion p50 %v p99 %v; consistency p50 %v p99 %v", n, res.startup, res.incP50, res.incP99, res.conP50, res.conP99)

	// Full verification, every column checked, against the baseline of
	// the same verification without the columns, interleaved; the faster
	// of two runs of each.
	for range 2 {
		for _, bodies := range []bool{false, true} {
			t1 := time.Now()
			vr, err := audit.VerifyWith(ctx, db, l.VerifierKey(), audit.VerifyOptions{BodiesOnly: bodies})
			if err != nil {
				return fmt.Errorf("verify %s: %w", path, err)
			}
			d := time.Since(t1)
			best := &res.verify
			if bodies {
				best = &res.verifyBodies
			}
			if *best == 0 || d < *best {
				*best = d
			}
			logf("%d events: verify (bodies only: %v) %v (%.0f events/s)", vr.Size, bodies, d, float64(vr.Size)/d.Seconds())
		}
	}
	if res.hashTiles, res.entryTiles, err = benchTiles(ctx, l, n); err != nil {
		return err
	}
	logf("%d events: full tiles over loopback HTTP: %.0f hash tiles/s, %.0f entry bundles/s", n, res.hashTiles.rate, res.entryTiles.rate)

	// The person's history: the page's query (their newest 20 events, and
	// the last 100 of SPEC §10), through the (usager_id, idx) index.
	for _, h := range []struct {
		limit int
		p50   *time.Duration
		p99   *time.Duration
	}{{20, &res.pageP50, &res.pageP99}, {100, &res.historyP50, &res.historyP99}} {
		var d []time.Duration
		for i := range 2 * samples / 10 {
			t := time.Now()
			es, err := l.ForUsager(ctx, HotUsager, 0, h.limit)
			if err != nil {
				return err
			}
			if i >= samples/10 { // the first half warms up
				d = append(d, time.Since(t))
			}
			if len(es) != h.limit {
				return fmt.Errorf("history of %d: %d events", h.limit, len(es))
			}
		}
		sortDur(d)
		*h.p50, *h.p99 = pct(d, 50), pct(d, 99)
	}
	res.historyEvents = int(n / 100)
	logf("%d events: history of a person with %d events: newest 20 p50 %v p99 %v; last 100 p50 %v p99 %v",
		n, res.historyEvents, res.pageP50, res.pageP99, res.historyP50, res.historyP99)
	res.rssAfter = peakRSS()
	r.logs = append(r.logs, res)
	return nil
}

func sortDur(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }

// readFile reads a file through, for the page cache.
func readFile(path string) (time.Duration, error) {
	t0 := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	for {
		_, err := f.Read(buf)
		if err == io.EOF {
			return time.Since(t0), nil
		}
		if err != nil {
			return 0, err
		}
	}
}
