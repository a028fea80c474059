package audit

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/tlog"

	"aidants/store"
)

// TamperError reports the first index at which the stored log stops being
// what was signed.
type TamperError struct {
	Index int64
	Msg   string
}

func (e *TamperError) Error() string { return fmt.Sprintf("index %d: %s", e.Index, e.Msg) }

// VerifyResult describes a log that verified.
type VerifyResult struct {
	Size        int64
	Root        tlog.Hash
	Checkpoints int64 // stored checkpoints whose root matched
}

// tree recomputes an RFC 6962 tree record by record, independently of the
// writer: a stack of the roots of its complete subtrees, leftmost first.
type tree struct {
	levels []int
	hashes []tlog.Hash
}

// add appends a record hash and returns the hashes the writer must have
// stored for it, in tlog's stored order: the leaf, then each subtree it
// completes.
func (t *tree) add(leaf tlog.Hash, out []tlog.Hash) []tlog.Hash {
	out = append(out[:0], leaf)
	t.levels = append(t.levels, 0)
	t.hashes = append(t.hashes, leaf)
	for n := len(t.levels); n >= 2 && t.levels[n-1] == t.levels[n-2]; n = len(t.levels) {
		h := tlog.NodeHash(t.hashes[n-2], t.hashes[n-1])
		lvl := t.levels[n-1] + 1
		t.levels, t.hashes = t.levels[:n-2], t.hashes[:n-2]
		t.levels = append(t.levels, lvl)
		t.hashes = append(t.hashes, h)
		out = append(out, h)
	}
	return out
}

// root is the RFC 6962 tree hash of the records added so far.
func (t *tree) root() tlog.Hash {
	if len(t.hashes) == 0 {
		return tlog.RecordHash(nil) // never used: checkpoints start at size 1
	}
	h := t.hashes[len(t.hashes)-1]
	for i := len(t.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(t.hashes[i], h)
	}
	return h
}

// Verify recomputes every leaf from the stored event bodies, every stored
// hash and the root, and checks them against the log head and every stored
// checkpoint; the latest checkpoint's signature is checked with vkey. When
// old is not nil (a checkpoint kept elsewhere, already verified), the log
// must extend it. A tampered log gives a *TamperError naming the first bad
// index.
func Verify(ctx context.Context, db *store.DB, vkey string, old *Checkpoint) (*VerifyResult, error) {
	var head struct {
		Size int64  `db:"size"`
		Root []byte `db:"root"`
	}
	if err := db.R.GetContext(ctx, &head, `SELECT size, root FROM audit_head WHERE id = 1`); err != nil {
		return nil, fmt.Errorf("audit: verify: read head: %w", err)
	}
	n := head.Size
	if old != nil && old.Size > n {
		return nil, &TamperError{Index: n, Msg: fmt.Sprintf("the log has %d events but an older checkpoint signed %d: truncated", n, old.Size)}
	}

	// The checkpoints, in size order; the latest must cover exactly the head.
	var cps []struct {
		Size int64  `db:"size"`
		Note []byte `db:"note"`
	}
	if err := db.R.SelectContext(ctx, &cps, `SELECT size, note FROM audit_checkpoints ORDER BY size`); err != nil {
		return nil, fmt.Errorf("audit: verify: read checkpoints: %w", err)
	}
	if n > 0 {
		if len(cps) == 0 {
			return nil, &TamperError{Index: 0, Msg: "no signed checkpoint covers the log"}
		}
		last := cps[len(cps)-1]
		if last.Size > n {
			return nil, &TamperError{Index: n, Msg: fmt.Sprintf("the log has %d events but its latest checkpoint signed %d: truncated", n, last.Size)}
		}
		if last.Size < n {
			return nil, &TamperError{Index: last.Size, Msg: "events past the latest signed checkpoint: inserted"}
		}
		if _, err := ParseCheckpoint(last.Note, vkey); err != nil {
			return nil, &TamperError{Index: n - 1, Msg: "the latest checkpoint's signature does not verify: " + err.Error()}
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	evc, evErr := streamRows(ctx, db, `SELECT idx, body FROM audit_events ORDER BY idx`, true)
	// Hashes are read by value alone, in id order: a missing or extra row
	// shifts every later comparison, and the count is checked at the end.
	hc, hErr := streamRows(ctx, db, `SELECT hash FROM audit_hashes ORDER BY id`, false)
	defer func() {
		// Stop the readers early on a verdict, then wait for them.
		cancel()
		drain(evc)
		drain(hc)
	}()

	var t tree
	var want []tlog.Hash
	evs, hs := &cursor{c: evc}, &cursor{c: hc}
	nextHashID := int64(0)
	ci := 0
	res := &VerifyResult{Size: n}
	for i := int64(0); i < n; i++ {
		id, leaf, ok := evs.nextLeaf()
		if !ok {
			if err := firstErr(evErr); err != nil {
				return nil, err
			}
			return nil, &TamperError{Index: i, Msg: "event is missing: deleted"}
		}
		if id != i {
			if id > i {
				return nil, &TamperError{Index: i, Msg: "event is missing: deleted"}
			}
			return nil, &TamperError{Index: i, Msg: "event indexes are out of order"}
		}
		want = t.add(leaf, want)
		for j, h := range want {
			hid, stored, ok := hs.next()
			if !ok {
				if err := firstErr(hErr); err != nil {
					return nil, err
				}
				return nil, &TamperError{Index: i, Msg: "stored hashes are missing"}
			}
			if hid != nextHashID || !bytes.Equal(stored, h[:]) {
				if j == 0 {
					return nil, &TamperError{Index: i, Msg: "event does not match its stored hash: edited, inserted or reordered"}
				}
				return nil, &TamperError{Index: i, Msg: "a stored tree hash does not match the events"}
			}
			nextHashID++
		}
		size := i + 1
		var root tlog.Hash
		var rooted bool
		for ci < len(cps) && cps[ci].Size <= size {
			if cps[ci].Size == size {
				if !rooted {
					root, rooted = t.root(), true
				}
				cp, err := parseUnverified(cps[ci].Note)
				if err != nil || cp.Root != root {
					return nil, &TamperError{Index: i, Msg: fmt.Sprintf("the stored checkpoint of size %d does not match the events", size)}
				}
				res.Checkpoints++
			}
			ci++
		}
		if old != nil && old.Size == size {
			if !rooted {
				root, rooted = t.root(), true
			}
			if root != old.Root {
				return nil, &TamperError{Index: i, Msg: fmt.Sprintf("the first %d events are not those of the older checkpoint: history rewritten", size)}
			}
		}
	}
	if id, _, ok := evs.next(); ok {
		return nil, &TamperError{Index: id, Msg: "event past the log head: inserted"}
	}
	if err := firstErr(evErr); err != nil {
		return nil, err
	}
	if hid, _, ok := hs.next(); ok {
		return nil, &TamperError{Index: n, Msg: fmt.Sprintf("stored hash %d past the log head: inserted", hid)}
	}
	if err := firstErr(hErr); err != nil {
		return nil, err
	}
	if n > 0 {
		res.Root = t.root()
		if !bytes.Equal(head.Root, res.Root[:]) {
			return nil, &TamperError{Index: n - 1, Msg: "the log head's root does not match the events"}
		}
	}
	return res, nil
}

// parseUnverified reads a checkpoint's size and root without checking its
// signature (only the latest one's signature is checked, by the caller).
func parseUnverified(msg []byte) (*Checkpoint, error) {
	text, _, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return nil, errors.New("audit: checkpoint without signature")
	}
	lines := bytes.SplitN(text, []byte("\n"), 4)
	if len(lines) < 3 {
		return nil, errors.New("audit: short checkpoint")
	}
	cp := &Checkpoint{Origin: string(lines[0])}
	if _, err := fmt.Sscanf(string(lines[1]), "%d", &cp.Size); err != nil {
		return nil, err
	}
	h, err := tlog.ParseHash(string(lines[2]))
	if err != nil {
		return nil, err
	}
	cp.Root = h
	return cp, nil
}

type row struct {
	id   int64
	data []byte
	leaf tlog.Hash // RecordHash(data), when the stream computes it
}

// streamRows reads rows of (int64, bytes) — or of bytes alone, numbered
// from 0, when the query has one column — on its own connection and hands
// them over in chunks, so that reading and hashing overlap on two cores.
// It talks to the driver directly: database/sql's per-row locking,
// conversions and copies cost more than the hashing.
//
// With leaves, the reader also computes each row's RecordHash, so that
// hashing the bodies runs beside the main goroutine's tree work.
func streamRows(ctx context.Context, db *store.DB, q string, leaves bool) (<-chan []row, *error) {
	c := make(chan []row, 8)
	errp := new(error)
	go func() {
		defer close(c)
		conn, err := db.R.Conn(ctx)
		if err != nil {
			*errp = fmt.Errorf("audit: verify: %w", err)
			return
		}
		defer conn.Close()
		if db.Dialect == store.SQLite {
			// A full scan reads every page once: map the file rather than
			// pay a read call per page. (Only this connection, only now.)
			conn.ExecContext(ctx, `PRAGMA mmap_size = 2147418112`)
			defer conn.ExecContext(context.Background(), `PRAGMA mmap_size = 0`)
		}
		err = conn.Raw(func(dc any) error {
			qc, ok := dc.(driver.QueryerContext)
			if !ok {
				return errors.New("driver cannot query")
			}
			rows, err := qc.QueryContext(ctx, q, nil)
			if err != nil {
				return err
			}
			defer rows.Close()
			dest := make([]driver.Value, len(rows.Columns()))
			chunk := make([]row, 0, 4096)
			var n int64
			for {
				if err := rows.Next(dest); err == io.EOF {
					break
				} else if err != nil {
					return err
				}
				r := row{id: n}
				n++
				v := dest[len(dest)-1]
				if len(dest) == 2 {
					id, ok := dest[0].(int64)
					if !ok {
						return fmt.Errorf("unexpected id %T", dest[0])
					}
					r.id = id
				}
				switch b := v.(type) {
				case []byte:
					r.data = b // the driver hands out a fresh slice per row
				case string:
					r.data = []byte(b)
				default:
					return fmt.Errorf("unexpected value %T", v)
				}
				if leaves {
					r.leaf = tlog.RecordHash(r.data)
					r.data = nil
				}
				chunk = append(chunk, r)
				if len(chunk) == cap(chunk) {
					select {
					case c <- chunk:
					case <-ctx.Done():
						return ctx.Err()
					}
					chunk = make([]row, 0, 4096)
				}
			}
			if len(chunk) > 0 {
				select {
				case c <- chunk:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
		if err != nil {
			*errp = fmt.Errorf("audit: verify: %w", err)
		}
	}()
	return c, errp
}

type cursor struct {
	c     <-chan []row
	chunk []row
	i     int
}

func (c *cursor) next() (int64, []byte, bool) {
	for c.i >= len(c.chunk) {
		chunk, ok := <-c.c
		if !ok {
			return 0, nil, false
		}
		c.chunk, c.i = chunk, 0
	}
	r := c.chunk[c.i]
	c.i++
	return r.id, r.data, true
}

// nextLeaf is next for a stream that computed leaf hashes.
func (c *cursor) nextLeaf() (int64, tlog.Hash, bool) {
	for c.i >= len(c.chunk) {
		chunk, ok := <-c.c
		if !ok {
			return 0, tlog.Hash{}, false
		}
		c.chunk, c.i = chunk, 0
	}
	r := c.chunk[c.i]
	c.i++
	return r.id, r.leaf, true
}

func drain(c <-chan []row) {
	for range c {
	}
}

// firstErr reads a streaming goroutine's error once its channel is closed.
func firstErr(p *error) error { return *p }
