package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

// serveTiles serves the log's tiles under /audit/ as the web package does,
// and records every body it served.
func serveTiles(t *testing.T, l *audit.Log) (*httptest.Server, *lockedBuffer) {
	served := &lockedBuffer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := strings.CutPrefix(r.URL.Path, "/audit/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		tile, err := audit.ParseTilePath(p)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		data, err := l.Tile(r.Context(), tile)
		var br *audit.ErrBadRange
		if errors.As(err, &br) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		served.Write(data)
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv, served
}

// lockedBuffer collects what concurrent handlers served.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// readAll reads every entry of tree through the tiles with torchwood's
// client, which checks each against the tree: Entries up to the last full
// tile, Entry (with its inclusion proof) for the trailing partial one.
func readAll(ctx context.Context, t *testing.T, base string, tree tlog.Tree) [][]byte {
	t.Helper()
	f, err := torchwood.NewTileFetcher(base)
	if err != nil {
		t.Fatal(err)
	}
	c, err := torchwood.NewClient(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i, e := range c.Entries(ctx, tree, 0) {
		if i != int64(len(out)) {
			t.Fatalf("entry %d after %d entries", i, len(out))
		}
		out = append(out, bytes.Clone(e))
	}
	if err := c.Err(); err != nil {
		t.Fatalf("torchwood client: %v", err)
	}
	for i := int64(len(out)); i < tree.N; i++ {
		e, _, err := c.Entry(ctx, tree, i)
		if err != nil {
			t.Fatalf("torchwood client, entry %d: %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

func TestTilesMirrorTheLogForAnIndependentClient(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _ := openLog(t, db)
		write := func(from, to int) {
			err := l.Write(ctx, func(tx *audit.Tx) error {
				for i := from; i < to; i++ {
					e := ev(i)
					e.Usager, e.Mandate, e.Demarches = fmt.Sprintf("usa_%d", i), fmt.Sprintf("man_%d", i), []string{"argent"}
					if _, err := tx.Append(e); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		write(0, 512)
		at512, err := l.Latest(ctx)
		if err != nil || at512.Size != 512 {
			t.Fatalf("checkpoint %v %v", at512, err)
		}
		write(512, 600)
		cp, _ := l.Latest(ctx)
		srv, served := serveTiles(t, l)
		for _, c := range []*audit.Checkpoint{at512, cp} {
			entries := readAll(ctx, t, srv.URL+"/audit/", tlog.Tree{N: c.Size, Hash: c.Root})
			if int64(len(entries)) != c.Size {
				t.Fatalf("read %d entries of %d", len(entries), c.Size)
			}
			// Each entry commits to its event: SHA-256(salt ‖ body).
			for i, e := range entries {
				got, err := l.At(ctx, int64(i), "")
				if err != nil {
					t.Fatal(err)
				}
				want := got.Entry()
				if !bytes.Equal(e, want[:]) {
					t.Fatalf("entry %d is not SHA-256(salt ‖ body)", i)
				}
			}
		}
		// Nothing in what was served names anyone, any démarche or any time.
		for _, secret := range []string{"aid_17", "usa_17", "man_17", "org_1", "argent", "aidant.login", "2026-", `"time"`} {
			if bytes.Contains(served.Bytes(), []byte(secret)) {
				t.Fatalf("served tiles contain %q", secret)
			}
		}
		// An entry bundle holds 32-byte entries only.
		bundle, err := l.Tile(ctx, tlog.Tile{H: 8, L: -1, N: 0, W: 256})
		if err != nil || len(bundle) != 256*34 {
			t.Fatalf("bundle of %d bytes, %v", len(bundle), err)
		}
		for rest := bundle; len(rest) > 0; {
			e, r, err := torchwood.ReadTileEntry(rest)
			if err != nil || len(e) != 32 {
				t.Fatalf("entry of %d bytes: %v", len(e), err)
			}
			rest = r
		}
		// A tile beyond the latest checkpoint does not exist.
		for _, p := range []string{"tile/entries/002.p/89", "tile/0/003", "tile/1/000", "tile/entries/x", "tile/data/000"} {
			resp, err := http.Get(srv.URL + "/audit/" + p)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("%s: %d, want 404", p, resp.StatusCode)
			}
		}
	})
}

// TestStoredTilesSurviveARestartAndTamperingIsNamed fills a tile across a
// restart of the writer (the partial tile is read back from the database),
// then edits and deletes stored tiles: verify names the index of the
// tile's last leaf.
func TestStoredTilesSurviveARestartAndTamperingIsNamed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, skey := openLog(t, db)
		add := func(l *audit.Log, from, to int) {
			err := l.Write(ctx, func(tx *audit.Tx) error {
				for i := from; i < to; i++ {
					if _, err := tx.Append(ev(i)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		add(l, 0, 300)
		l.Close()
		l2, err := audit.Open(ctx, db, audit.Options{SigningKey: skey})
		if err != nil {
			t.Fatal(err)
		}
		add(l2, 300, 520) // tile 1 completes after the restart
		l2.Close()
		var n int
		db.R.Get(&n, `SELECT COUNT(*) FROM audit_tiles`)
		if n != 4 {
			t.Fatalf("%d stored tiles, want 4 (two levels of two full tiles)", n)
		}
		if _, err := audit.Verify(ctx, db, l.VerifierKey(), nil); err != nil {
			t.Fatalf("verify: %v", err)
		}
		dropAllTriggers(t, db)
		var orig []byte
		if err := db.R.Get(&orig, `SELECT data FROM audit_tiles WHERE level = -1 AND n = 1`); err != nil {
			t.Fatal(err)
		}
		forged := append([]byte{}, orig...)
		forged[100] ^= 1
		if _, err := db.W.Exec(db.Rebind(`UPDATE audit_tiles SET data = ? WHERE level = -1 AND n = 1`), forged); err != nil {
			t.Fatal(err)
		}
		_, err = audit.Verify(ctx, db, l.VerifierKey(), nil)
		var te *audit.TamperError
		if !errors.As(err, &te) || te.Index != 511 || !strings.Contains(te.Msg, "does not match") {
			t.Fatalf("an edited tile: %v", err)
		}
		if _, err := db.W.Exec(db.Rebind(`UPDATE audit_tiles SET data = ? WHERE level = -1 AND n = 1`), orig); err != nil {
			t.Fatal(err)
		}
		if _, err := audit.Verify(ctx, db, l.VerifierKey(), nil); err != nil {
			t.Fatalf("verify after undoing: %v", err)
		}
		mustExec(t, db, `DELETE FROM audit_tiles WHERE level = 0 AND n = 0`)
		_, err = audit.Verify(ctx, db, l.VerifierKey(), nil)
		if !errors.As(err, &te) || te.Index != 255 || !strings.Contains(te.Msg, "missing") {
			t.Fatalf("a deleted tile: %v", err)
		}
	})
}
