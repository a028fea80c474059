package audit

import (
	"context"
	"crypto/sha256"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"aidants/store"
)

// The readers below talk to the driver directly: database/sql's per-row
// locking, conversions and copies cost more than the hashing. Each runs on
// its own connection and hands rows over in chunks, so that reading,
// hashing and the tree's work overlap on two cores.

const chunkRows = 4096

// rawEvent is a stored event as read: the salt and body concatenated (what
// the entry hashes), and every queryable column packed into one string by
// the query (packColumns), which costs less to read than eleven columns.
type rawEvent struct {
	idx      int64
	saltBody []byte
	saltLen  int64
	columns  string
}

// evRow is an event as verified: its leaf hash, and the first of its
// columns that differs from its body, if any.
type evRow struct {
	idx       int64
	leaf      tlog.Hash
	entry     [EntrySize]byte
	badColumn string
}

// eventsQuery reads every event in index order: idx, salt ‖ body, and the
// columns packed as packColumns describes. On SQLite, whose columns take
// any value, each field also carries its storage type: a column turned
// into a BLOB reads back as the same text through ||, yet no longer
// matches the journal's filters, which is hiding an event.
func eventsQuery(d store.Dialect, bodiesOnly bool) string {
	if bodiesOnly {
		return `SELECT idx, salt || body, '' FROM audit_events ORDER BY idx`
	}
	var cols []string
	if d == store.Postgres {
		cols = []string{"length(salt)::text", "type", "time::text"}
		for _, c := range columnNames {
			cols = append(cols, "COALESCE('=' || "+c+", '-')")
		}
		return `SELECT idx, salt || body, ` + strings.Join(cols, " || chr(31) || ") + ` FROM audit_events ORDER BY idx`
	}
	cols = []string{
		"CASE WHEN typeof(salt) = 'blob' AND typeof(body) = 'blob' THEN length(salt) ELSE -1 END",
		"CASE typeof(type) WHEN 'text' THEN type ELSE '!' || typeof(type) END",
		"CASE typeof(time) WHEN 'integer' THEN time ELSE '!' || typeof(time) END",
	}
	for _, c := range columnNames {
		cols = append(cols, "CASE typeof("+c+") WHEN 'text' THEN '=' || "+c+" WHEN 'null' THEN '-' ELSE '!' || typeof("+c+") END")
	}
	return `SELECT idx, salt || body, ` + strings.Join(cols, " || char(31) || ") + ` FROM audit_events ORDER BY idx`
}

// streamEvents reads every event in index order. A second goroutine
// recomputes each event's entry and leaf hash and checks its columns
// against its body, beside the reader and the tree.
func streamEvents(ctx context.Context, db *store.DB, bodiesOnly bool) (<-chan []evRow, *error) {
	raw := make(chan []rawEvent, 4)
	out := make(chan []evRow, 4)
	errp := new(error)
	readErr := new(error)
	go func() {
		defer close(raw)
		*readErr = queryRaw(ctx, db, eventsQuery(db.Dialect, bodiesOnly), func(rows driver.Rows) error {
			dest := make([]driver.Value, 3)
			chunk := make([]rawEvent, 0, chunkRows)
			for {
				if err := rows.Next(dest); err == io.EOF {
					break
				} else if err != nil {
					return err
				}
				var r rawEvent
				var ok bool
				if r.idx, ok = dest[0].(int64); !ok {
					return fmt.Errorf("unexpected idx %T", dest[0])
				}
				r.saltBody, r.columns = asBytes(dest[1]), asString(dest[2])
				chunk = append(chunk, r)
				if len(chunk) == cap(chunk) {
					select {
					case raw <- chunk:
					case <-ctx.Done():
						return ctx.Err()
					}
					chunk = make([]rawEvent, 0, chunkRows)
				}
			}
			if len(chunk) > 0 {
				select {
				case raw <- chunk:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	}()
	go func() {
		defer close(out)
		var buf []byte
		for chunk := range raw {
			rows := make([]evRow, len(chunk))
			for i := range chunk {
				r := &chunk[i]
				entry := sha256.Sum256(r.saltBody)
				rows[i] = evRow{idx: r.idx, leaf: tlog.RecordHash(entry[:]), entry: entry}
				if !bodiesOnly {
					rows[i].badColumn, buf = checkPacked(r, buf)
				}
			}
			select {
			case out <- rows:
			case <-ctx.Done():
				drainRaw(raw)
				return
			}
		}
		*errp = *readErr
	}()
	return out, errp
}

func drainRaw(c <-chan []rawEvent) {
	for range c {
	}
}

// idBytes is a row of an id and bytes.
type idBytes struct {
	id   int64
	data []byte
}

// streamRows reads a query of (id, bytes) rows, in order.
func streamRows(ctx context.Context, db *store.DB, q string) (<-chan []idBytes, *error) {
	c := make(chan []idBytes, 8)
	errp := new(error)
	go func() {
		defer close(c)
		*errp = queryRaw(ctx, db, q, func(rows driver.Rows) error {
			dest := make([]driver.Value, 2)
			chunk := make([]idBytes, 0, chunkRows)
			for {
				if err := rows.Next(dest); err == io.EOF {
					break
				} else if err != nil {
					return err
				}
				id, ok := dest[0].(int64)
				if !ok {
					return fmt.Errorf("unexpected id %T", dest[0])
				}
				chunk = append(chunk, idBytes{id, asBytes(dest[1])})
				if len(chunk) == cap(chunk) {
					select {
					case c <- chunk:
					case <-ctx.Done():
						return ctx.Err()
					}
					chunk = make([]idBytes, 0, chunkRows)
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
	}()
	return c, errp
}

// streamCheckpoints reads (gsize, origin_no, size, note) rows in order —
// or any rows of three integers and bytes, such as stored tiles.
func streamCheckpoints(ctx context.Context, db *store.DB, q string) (<-chan []cpRow, *error) {
	c := make(chan []cpRow, 2)
	errp := new(error)
	go func() {
		defer close(c)
		*errp = queryRaw(ctx, db, q, func(rows driver.Rows) error {
			dest := make([]driver.Value, 4)
			chunk := make([]cpRow, 0, 256)
			for {
				if err := rows.Next(dest); err == io.EOF {
					break
				} else if err != nil {
					return err
				}
				var r cpRow
				r.gsize, _ = dest[0].(int64)
				r.origin, _ = dest[1].(int64)
				r.size, _ = dest[2].(int64)
				r.note = asBytes(dest[3])
				chunk = append(chunk, r)
				if len(chunk) == cap(chunk) {
					select {
					case c <- chunk:
					case <-ctx.Done():
						return ctx.Err()
					}
					chunk = make([]cpRow, 0, 256)
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
	}()
	return c, errp
}

// queryRaw runs q on a connection of its own and hands the driver's rows
// to f.
func queryRaw(ctx context.Context, db *store.DB, q string, f func(driver.Rows) error) error {
	conn, err := db.R.Conn(ctx)
	if err != nil {
		return fmt.Errorf("audit: verify: %w", err)
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
		return f(rows)
	})
	if err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	return nil
}

func asBytes(v driver.Value) []byte {
	switch b := v.(type) {
	case []byte:
		return b // the drivers hand out a fresh slice per row
	case string:
		return []byte(b)
	}
	return nil
}

func asString(v driver.Value) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	return ""
}

type cursor struct {
	c     <-chan []idBytes
	chunk []idBytes
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

type evCursor struct {
	c     <-chan []evRow
	chunk []evRow
	i     int
}

func (c *evCursor) next() (evRow, bool) {
	for c.i >= len(c.chunk) {
		chunk, ok := <-c.c
		if !ok {
			return evRow{}, false
		}
		c.chunk, c.i = chunk, 0
	}
	r := c.chunk[c.i]
	c.i++
	return r, true
}

type cpCursor struct {
	c     <-chan []cpRow
	chunk []cpRow
	i     int
}

func (c *cpCursor) peek() (cpRow, bool) {
	for c.i >= len(c.chunk) {
		chunk, ok := <-c.c
		if !ok {
			return cpRow{}, false
		}
		c.chunk, c.i = chunk, 0
	}
	return c.chunk[c.i], true
}

func (c *cpCursor) take() { c.i++ }

func drain[T any](c <-chan T) {
	for range c {
	}
}
