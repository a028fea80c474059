package audit

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/store"
)

// The log as C2SP tlog-tiles (c2sp.org/tlog-tiles): hash tiles of 256
// hashes at tree levels 0, 8, 16…, and entry bundles of 256 entries, each
// entry being SHA-256(salt ‖ body) — a commitment that reveals nothing
// about the event (SPEC §6.1). Anyone holding the tiles rebuilds the tree
// and checks it against a signed checkpoint, with any tlog client.

// TileHeight is the height of tiles (c2sp.org/tlog-tiles).
const TileHeight = 8

// TileWidth is the number of hashes or entries in a full tile.
const TileWidth = 1 << TileHeight

// ErrNoTile is returned for a tile the log does not have (beyond its
// latest checkpoint, or malformed).
var ErrNoTile = &ErrBadRange{Msg: "no such tile"}

// ParseTilePath reads a tile path relative to the tiles' prefix:
// "tile/<L>/<N>[.p/<W>]" or "tile/entries/<N>[.p/<W>]".
func ParseTilePath(path string) (tlog.Tile, error) {
	if rest, ok := strings.CutPrefix(path, "tile/entries/"); ok {
		t, err := tlog.ParseTilePath("tile/8/data/" + rest)
		if err != nil {
			return tlog.Tile{}, fmt.Errorf("audit: malformed tile path %q", path)
		}
		return t, nil
	}
	if rest, ok := strings.CutPrefix(path, "tile/"); ok && !strings.HasPrefix(rest, "data/") {
		t, err := tlog.ParseTilePath("tile/8/" + rest)
		if err != nil {
			return tlog.Tile{}, fmt.Errorf("audit: malformed tile path %q", path)
		}
		return t, nil
	}
	return tlog.Tile{}, fmt.Errorf("audit: malformed tile path %q", path)
}

// TilePath is the path of t relative to the tiles' prefix.
func TilePath(t tlog.Tile) string {
	if t.L == -1 {
		return "tile/entries/" + strings.TrimPrefix(t.Path(), "tile/8/data/")
	}
	return "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
}

// Tile returns the data of tile t of the current origin's tree, which must
// lie within its latest signed checkpoint. A full tile never changes.
func (l *Log) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	cp, err := l.Latest(ctx)
	if err != nil {
		return nil, err
	}
	return l.tileOf(ctx, l.cur, cp.Size, t)
}

// TileOf returns tile t of origin no's tree: the current origin's up to
// its latest checkpoint, an earlier origin's up to its end (none of its
// tiles changes any more).
func (l *Log) TileOf(ctx context.Context, no int64, t tlog.Tile) ([]byte, error) {
	if no == l.cur.No {
		return l.Tile(ctx, t)
	}
	origins, err := Origins(ctx, l.db)
	if err != nil {
		return nil, err
	}
	for i, o := range origins {
		if o.No == no && i+1 < len(origins) {
			return l.tileOf(ctx, &o, origins[i+1].Start-o.Start, t)
		}
	}
	return nil, ErrNoTile
}

func (l *Log) tileOf(ctx context.Context, o *Origin, size int64, t tlog.Tile) ([]byte, error) {
	if t.H != TileHeight || t.W < 1 || t.W > TileWidth || t.N < 0 || t.L < -1 || t.L > 7 {
		return nil, ErrNoTile
	}
	// The tile holds hashes (or entries) N*256 … N*256+W-1 of level 8L;
	// the last one exists once the tree covers its 2^(8L) leaves.
	end := t.N*TileWidth + int64(t.W)
	if lvl := TileHeight * max(t.L, 0); end > size>>lvl {
		return nil, ErrNoTile
	}
	if t.W == TileWidth && t.L <= 0 {
		// A full tile of level 0 or -1 was stored when it filled.
		var data []byte
		err := l.db.R.GetContext(ctx, &data, l.db.Rebind(`SELECT data FROM audit_tiles WHERE origin_no = ? AND level = ? AND n = ?`), o.No, t.L, t.N)
		if err == nil {
			return data, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("audit: tile %s: %w", TilePath(t), err)
		}
	}
	if t.L == -1 {
		return l.entryBundle(ctx, o, t.N*TileWidth, end)
	}
	pr := l.proofs
	pr.base = o.HashBase
	data, err := tlog.ReadTileData(t, rangeReader{pr})
	if err != nil {
		return nil, fmt.Errorf("audit: tile %s: %w", TilePath(t), err)
	}
	return data, nil
}

// OriginCheckpoint returns origin no's newest witnessed checkpoint, with
// its cosignatures, or else its newest signed one.
func (l *Log) OriginCheckpoint(ctx context.Context, no int64) ([]byte, error) {
	var msg []byte
	err := l.db.R.GetContext(ctx, &msg, l.db.Rebind(`SELECT note FROM audit_witnessed WHERE origin_no = ? ORDER BY id DESC LIMIT 1`), no)
	if errors.Is(err, sql.ErrNoRows) {
		err = l.db.R.GetContext(ctx, &msg, l.db.Rebind(`SELECT note FROM audit_checkpoints WHERE origin_no = ? ORDER BY gsize DESC LIMIT 1`), no)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoTile
	}
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint of origin %d: %w", no, err)
	}
	return msg, nil
}

// entryBundle reads the entries of origin o's leaves [from, to).
func (l *Log) entryBundle(ctx context.Context, o *Origin, from, to int64) ([]byte, error) {
	rows, err := l.db.R.QueryContext(ctx, l.db.Rebind(`SELECT idx, body, salt FROM audit_events WHERE idx >= ? AND idx < ? ORDER BY idx`),
		o.Start+from, o.Start+to)
	if err != nil {
		return nil, fmt.Errorf("audit: entry bundle: %w", err)
	}
	defer rows.Close()
	out := make([]byte, 0, (to-from)*(2+EntrySize))
	next := o.Start + from
	var body, salt []byte
	for rows.Next() {
		var idx int64
		if err := rows.Scan(&idx, &body, &salt); err != nil {
			return nil, fmt.Errorf("audit: entry bundle: %w", err)
		}
		if idx != next {
			return nil, fmt.Errorf("audit: entry bundle: event %d is missing", next)
		}
		next++
		e := EntryOf(salt, body)
		out = binary.BigEndian.AppendUint16(out, EntrySize)
		out = append(out, e[:]...)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: entry bundle: %w", err)
	}
	if next != o.Start+to {
		return nil, fmt.Errorf("audit: entry bundle: event %d is missing", next)
	}
	return out, nil
}

// rangeReader reads the stored hashes of a tile: the 256 hashes of a
// level-0 tile lie among 511 consecutive rows, read in one range scan
// rather than looked up one by one; higher tiles come from the proofs'
// cache of high-level hashes.
type rangeReader struct{ proofReader }

func (r rangeReader) ReadHashes(ids []int64) ([]tlog.Hash, error) {
	if len(ids) < 16 {
		return r.proofReader.ReadHashes(ids)
	}
	lo, hi := ids[0], ids[0]
	for _, id := range ids {
		lo, hi = min(lo, id), max(hi, id)
	}
	if hi-lo > 4*int64(len(ids)) {
		return r.proofReader.ReadHashes(ids)
	}
	rows, err := r.db.R.Query(r.db.Rebind(`SELECT id, hash FROM audit_hashes WHERE id >= ? AND id <= ?`), r.base+lo, r.base+hi)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	span := make([][]byte, hi-lo+1)
	for rows.Next() {
		var id int64
		var h []byte
		if err := rows.Scan(&id, &h); err != nil {
			return nil, err
		}
		if k := id - r.base - lo; k >= 0 && k < int64(len(span)) {
			span[k] = h
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(ids))
	for i, id := range ids {
		h := span[id-lo]
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("stored hash %d is missing", id)
		}
		copy(out[i][:], h)
	}
	return out, nil
}

// tileEdge is the current partial tile of the tree being appended to: the
// leaf hashes and entries since the last full tile. When the 256th comes,
// the writer stores both full tiles (audit_tiles) in the same transaction.
type tileEdge struct {
	leaves  []tlog.Hash
	entries [][EntrySize]byte
}

func (e *tileEdge) clone() *tileEdge {
	c := &tileEdge{leaves: make([]tlog.Hash, 0, TileWidth), entries: make([][EntrySize]byte, 0, TileWidth)}
	if e != nil {
		c.leaves = append(c.leaves, e.leaves...)
		c.entries = append(c.entries, e.entries...)
	}
	return c
}

// add appends a leaf and tells whether the tile is now full.
func (e *tileEdge) add(leaf tlog.Hash, entry [EntrySize]byte) bool {
	e.leaves = append(e.leaves, leaf)
	e.entries = append(e.entries, entry)
	return len(e.leaves) == TileWidth
}

func (e *tileEdge) reset() { e.leaves, e.entries = e.leaves[:0], e.entries[:0] }

// rows are the full tile n's two rows, in level order: its entry bundle
// and its leaf hashes.
func (e *tileEdge) rows(origin, n int64) []tileRow {
	return []tileRow{{origin: origin, level: -1, n: n, data: entryBundleData(e.entries)}, {origin: origin, level: 0, n: n, data: hashTileData(e.leaves)}}
}

func hashTileData(hs []tlog.Hash) []byte {
	out := make([]byte, 0, len(hs)*tlog.HashSize)
	for _, h := range hs {
		out = append(out, h[:]...)
	}
	return out
}

func entryBundleData(es [][EntrySize]byte) []byte {
	out := make([]byte, 0, len(es)*(2+EntrySize))
	for _, e := range es {
		out = binary.BigEndian.AppendUint16(out, EntrySize)
		out = append(out, e[:]...)
	}
	return out
}

type tileRow struct {
	origin, level, n int64
	data             []byte
}

func insertTiles(tx *sqlx.Tx, db *store.DB, rows []tileRow) error {
	for _, r := range rows {
		if _, err := tx.Exec(db.Rebind(`INSERT INTO audit_tiles (origin_no, level, n, data) VALUES (?, ?, ?, ?)`), r.origin, r.level, r.n, r.data); err != nil {
			return fmt.Errorf("audit: store tile %d/%d: %w", r.level, r.n, err)
		}
	}
	return nil
}

// readEdge reads the current partial tile of origin o's tree of the given
// size: at most 255 leaves, so the writer starts in constant time.
func readEdge(q sqlx.Queryer, db *store.DB, o *Origin, size int64) (*tileEdge, error) {
	e := (*tileEdge)(nil).clone()
	from := size / TileWidth * TileWidth
	if from == size {
		return e, nil
	}
	ids := make([]int64, 0, size-from)
	for k := from; k < size; k++ {
		ids = append(ids, tlog.StoredHashIndex(0, k))
	}
	hs, err := readHashes(q, db, o.HashBase, ids)
	if err != nil {
		return nil, fmt.Errorf("audit: read the partial tile: %w", err)
	}
	rows, err := q.Query(db.Rebind(`SELECT salt, body FROM audit_events WHERE idx >= ? AND idx < ? ORDER BY idx`), o.Start+from, o.Start+size)
	if err != nil {
		return nil, fmt.Errorf("audit: read the partial tile: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var salt, body []byte
		if err := rows.Scan(&salt, &body); err != nil {
			return nil, fmt.Errorf("audit: read the partial tile: %w", err)
		}
		e.entries = append(e.entries, EntryOf(salt, body))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(e.entries) != len(hs) {
		return nil, fmt.Errorf("audit: read the partial tile: %d events for %d leaves", len(e.entries), len(hs))
	}
	e.leaves = append(e.leaves, hs...)
	return e, nil
}
