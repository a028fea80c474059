package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"aidants/audit"
)

// tileRate is full tiles served per second over loopback HTTP.
type tileRate struct {
	rate    float64
	clients int
	tiles   int64 // distinct full tiles in the log
}

// benchTiles serves the log's tiles over loopback HTTP with the calls the
// /audit/tile/ handler makes (ParseTilePath, Log.Tile) and measures full
// tiles per second, random among all of the log's, from 16 keep-alive
// clients: level-0 hash tiles (256 hashes) and entry bundles.
func benchTiles(ctx context.Context, l *audit.Log, n int64) (hashes, entries tileRate, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := audit.ParseTilePath(strings.TrimPrefix(r.URL.Path, "/audit/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		data, err := l.Tile(r.Context(), t)
		if errors.Is(err, audit.ErrNoTile) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Write(data)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String() + "/audit/"
	full := n / audit.TileWidth
	for i, level := range []int{0, -1} {
		rate, err := measureTiles(ctx, base, level, full, 16, 3*time.Second)
		if err != nil {
			return hashes, entries, err
		}
		tr := tileRate{rate: rate, clients: 16, tiles: full}
		if i == 0 {
			hashes = tr
		} else {
			entries = tr
		}
	}
	return hashes, entries, nil
}

func measureTiles(ctx context.Context, base string, level int, full int64, clients int, d time.Duration) (float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var served atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(level+2)))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t := tlog.Tile{H: audit.TileHeight, L: level, N: rng.Int64N(full), W: audit.TileWidth}
				resp, err := hc.Get(base + audit.TilePath(t))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				nb, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || nb < 256*32 {
					firstErr.CompareAndSwap(nil, fmt.Errorf("tile %s: %d, %d bytes", audit.TilePath(t), resp.StatusCode, nb))
					return
				}
				served.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return float64(served.Load()) / time.Since(start).Seconds(), nil
}
