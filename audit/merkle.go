package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jmoiron/sqlx"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/store"
)

// frontierIndexes lists the stored-hash indexes of the roots of the complete
// subtrees that make up a tree of size n: the only hashes needed to append
// the next records and to compute the tree hash.
func frontierIndexes(n int64) []int64 {
	var out []int64
	for level := 62; level >= 0; level-- {
		if n>>uint(level)&1 == 1 {
			out = append(out, tlog.StoredHashIndex(level, n>>uint(level)-1))
		}
	}
	return out
}

func (l *Log) pruneFrontier() {
	keep := make(map[int64]tlog.Hash, 64)
	for _, id := range frontierIndexes(l.size) {
		if h, ok := l.frontier[id]; ok {
			keep[id] = h
		}
	}
	l.frontier = keep
}

func readFrontier(q sqlx.Queryer, db *store.DB, base, size int64) (map[int64]tlog.Hash, error) {
	ids := frontierIndexes(size)
	hs, err := readHashes(q, db, base, ids)
	if err != nil {
		return nil, fmt.Errorf("audit: read frontier: %w", err)
	}
	m := make(map[int64]tlog.Hash, len(ids))
	for i, id := range ids {
		m[id] = hs[i]
	}
	return m, nil
}

// readHashes reads stored hashes by index, in one query. The indexes are
// those of one origin's tree, whose stored hashes start at row base.
func readHashes(q sqlx.Queryer, db *store.DB, base int64, ids []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rowIDs := ids
	if base != 0 {
		rowIDs = make([]int64, len(ids))
		for i, id := range ids {
			rowIDs[i] = base + id
		}
	}
	query, args, err := sqlx.In(`SELECT id, hash FROM audit_hashes WHERE id IN (?)`, rowIDs)
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(db.Rebind(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := make(map[int64][]byte, len(ids))
	for rows.Next() {
		var id int64
		var h []byte
		if err := rows.Scan(&id, &h); err != nil {
			return nil, err
		}
		found[id-base] = h
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i, id := range ids {
		h, ok := found[id]
		if !ok || len(h) != tlog.HashSize {
			return nil, fmt.Errorf("stored hash %d is missing", id)
		}
		copy(out[i][:], h)
	}
	return out, nil
}

// overlayReader serves the hashes computed earlier in the same batch, then
// the cached right edge of the tree, then the database (inside the
// writer's transaction).
type overlayReader struct {
	added    map[int64]tlog.Hash
	frontier map[int64]tlog.Hash
	tx       *sqlx.Tx
	db       *store.DB
	base     int64
}

func (r *overlayReader) ReadHashes(ids []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ids))
	var missing []int64
	var where []int
	for i, id := range ids {
		if h, ok := r.added[id]; ok {
			out[i] = h
		} else if h, ok := r.frontier[id]; ok {
			out[i] = h
		} else {
			missing = append(missing, id)
			where = append(where, i)
		}
	}
	if len(missing) > 0 {
		hs, err := readHashes(r.tx, r.db, r.base, missing)
		if err != nil {
			return nil, err
		}
		for j, i := range where {
			out[i] = hs[j]
		}
	}
	return out, nil
}

// highLevel is the lowest tree level whose stored hashes proofs keep in
// memory: a node at level 8 or more covers 256 events, so there are about
// N/128 of them (80,000 for ten million events, about 6 MB), and a proof
// finds there all its siblings but the eight low ones, which lie close
// together in the table. Stored hashes never change, so the cache is never
// stale. (Measured at 10 M events: inclusion p99 2 ms without, 0.5 ms with.)
const highLevel = 8

// hashCache keeps the high-level stored hashes proofs read.
type hashCache struct {
	mu sync.RWMutex
	m  map[int64]tlog.Hash
}

// proofReader reads the stored hashes of one origin's tree for proofs:
// high-level ones from the cache (keyed by row id, so that origins share
// it), the rest from the readers' pool in one query.
type proofReader struct {
	db    *store.DB
	cache *hashCache
	base  int64
}

func (r proofReader) ReadHashes(ids []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ids))
	var missing []int64
	var where []int
	r.cache.mu.RLock()
	for i, id := range ids {
		if h, ok := r.cache.m[r.base+id]; ok {
			out[i] = h
		} else {
			missing = append(missing, id)
			where = append(where, i)
		}
	}
	r.cache.mu.RUnlock()
	if len(missing) == 0 {
		return out, nil
	}
	hs, err := readHashes(r.db.R, r.db, r.base, missing)
	if err != nil {
		return nil, err
	}
	r.cache.mu.Lock()
	for j, i := range where {
		out[i] = hs[j]
		if level, _ := tlog.SplitStoredHashIndex(missing[j]); level >= highLevel {
			r.cache.m[r.base+missing[j]] = hs[j]
		}
	}
	r.cache.mu.Unlock()
	return out, nil
}

// Checkpoint is a signed statement of the log's size and root hash, in the
// C2SP tlog-checkpoint format: "<origin>\n<size>\n<base64 root>\n" followed
// by the note signatures.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	Note   []byte // the signed note, as served and stored
}

func (l *Log) sign(size int64, root tlog.Hash) (*Checkpoint, error) {
	text := fmt.Sprintf("%s\n%d\n%s\n", l.origin, size, base64.StdEncoding.EncodeToString(root[:]))
	msg, err := note.Sign(&note.Note{Text: text}, l.signer)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return &Checkpoint{Origin: l.origin, Size: size, Root: root, Note: msg}, nil
}

// ParseCheckpoint verifies a signed checkpoint with the given verifier key
// (note form, "<name>+<hash>+<base64>") and returns its contents.
func ParseCheckpoint(msg []byte, vkey string) (*Checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint signature: %w", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return nil, errors.New("audit: checkpoint: want origin, size and root lines")
	}
	if lines[0] != v.Name() {
		return nil, fmt.Errorf("audit: checkpoint origin %q is not the key's %q", lines[0], v.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || lines[1] != strconv.FormatInt(size, 10) {
		return nil, fmt.Errorf("audit: checkpoint size %q", lines[1])
	}
	rb, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rb) != tlog.HashSize {
		return nil, fmt.Errorf("audit: checkpoint root %q", lines[2])
	}
	cp := &Checkpoint{Origin: lines[0], Size: size, Note: bytes.Clone(msg)}
	copy(cp.Root[:], rb)
	return cp, nil
}

// loadLatest reads the current origin's latest checkpoint, verifying it
// with the log's key.
func (l *Log) loadLatest(ctx context.Context) error {
	var msg []byte
	err := l.db.R.GetContext(ctx, &msg, l.db.Rebind(`SELECT note FROM audit_checkpoints WHERE origin_no = ? ORDER BY gsize DESC LIMIT 1`), l.cur.No)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: read latest checkpoint: %w", err)
	}
	cp, err := ParseCheckpoint(msg, l.vkey)
	if err != nil {
		return fmt.Errorf("audit: latest checkpoint does not verify with the configured key: %w", err)
	}
	l.latest.Store(cp)
	return nil
}

// Latest returns the current origin's latest checkpoint, refreshed from
// the database so that checkpoints signed by another process (the command
// line, another server) are seen. It returns ErrEmpty before the first
// event.
func (l *Log) Latest(ctx context.Context) (*Checkpoint, error) {
	var gsize int64
	if err := l.db.R.GetContext(ctx, &gsize, `SELECT COALESCE(MAX(gsize), 0) FROM audit_checkpoints`); err != nil {
		return nil, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	size := gsize - l.cur.Start
	if cp := l.latest.Load(); cp != nil && cp.Size >= size {
		return cp, nil
	}
	if size <= 0 {
		return nil, ErrEmpty
	}
	if err := l.loadLatest(ctx); err != nil {
		return nil, err
	}
	if cp := l.latest.Load(); cp != nil {
		return cp, nil
	}
	return nil, ErrEmpty
}

// Head returns the latest checkpoint, or for an empty log a checkpoint of
// size 0 signed now and not stored (its root the RFC 6962 empty-tree hash),
// so that witnesses can be asked what they hold of a log that lost
// everything.
func (l *Log) Head(ctx context.Context) (*Checkpoint, error) {
	cp, err := l.Latest(ctx)
	if errors.Is(err, ErrEmpty) {
		return l.sign(0, tlog.Hash(sha256.Sum256(nil)))
	}
	return cp, err
}

// ErrEmpty is returned when the log has no checkpoint yet.
var ErrEmpty = errors.New("audit: the log is empty")

// GenerateKey returns a new note signer key named after origin.
func GenerateKey(origin string) (string, error) {
	skey, _, err := note.GenerateKey(nil, origin)
	if err != nil {
		return "", fmt.Errorf("audit: generate key: %w", err)
	}
	return skey, nil
}

// VerifierKey derives the public verifier key from a note signer key.
func VerifierKey(skey string) (string, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return "", fmt.Errorf("audit: signing key: %w", err)
	}
	// PRIVATE+KEY+<name>+<hash>+<base64>; the base64 may itself hold '+'.
	parts := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(parts[len(parts)-1])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		return "", errors.New("audit: signing key: not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(s.Name(), pub)
}
