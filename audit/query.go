package audit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"aidants/store"
)

// Entry is a stored event with its position in the log.
type Entry struct {
	Index int64  // global position (the origin's leaf index for the first origin)
	Body  []byte // the exact bytes committed to by the entry
	Salt  []byte // SaltSize random bytes
	Event Event
}

// Entry is the event's public entry, SHA-256(salt ‖ body).
func (e *Entry) Entry() [EntrySize]byte { return EntryOf(e.Salt, e.Body) }

// LeafHash is the event's leaf hash in the tree, tlog.RecordHash(entry).
func (e *Entry) LeafHash() tlog.Hash {
	en := e.Entry()
	return tlog.RecordHash(en[:])
}

// ErrNotFound is returned for an index the log does not hold, or does not
// hold for this person.
var ErrNotFound = store.ErrNotFound

// ForUsager returns the person's events, newest first, with an index below
// before (0 for the newest), at most limit of them. It reads the
// (usager_id, idx) index only: its cost does not grow with the log.
func (l *Log) ForUsager(ctx context.Context, usagerID string, before int64, limit int) ([]Entry, error) {
	q := `SELECT idx, body, salt FROM audit_events WHERE usager_id = ?`
	args := []any{usagerID}
	if before > 0 {
		q += ` AND idx < ?`
		args = append(args, before)
	}
	q += ` ORDER BY idx DESC LIMIT ?`
	args = append(args, limit)
	return l.entries(ctx, q, args...)
}

func (l *Log) entries(ctx context.Context, q string, args ...any) ([]Entry, error) {
	rows, err := l.db.R.QueryContext(ctx, l.db.Rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("audit: query: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.Index, &e.Body, &e.Salt); err != nil {
			return nil, fmt.Errorf("audit: query: %w", err)
		}
		if e.Event, err = ParseEvent(e.Body); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ForUsagerAll calls f for every event of the person, oldest first,
// without holding them all in memory.
func (l *Log) ForUsagerAll(ctx context.Context, usagerID string, f func(Entry) error) error {
	var after int64 = -1
	for {
		batch, err := l.entries(ctx, `SELECT idx, body, salt FROM audit_events WHERE usager_id = ? AND idx > ? ORDER BY idx LIMIT 500`, usagerID, after)
		if err != nil {
			return err
		}
		for _, e := range batch {
			if err := f(e); err != nil {
				return err
			}
			after = e.Index
		}
		if len(batch) < 500 {
			return nil
		}
	}
}

// At returns the event at index, if it concerns usagerID ("" for any).
// Another person's event gives ErrOtherUsager, so that the caller can
// journal the attempt.
func (l *Log) At(ctx context.Context, index int64, usagerID string) (*Entry, error) {
	var row struct {
		Body   []byte  `db:"body"`
		Salt   []byte  `db:"salt"`
		Usager *string `db:"usager_id"`
	}
	err := l.db.R.GetContext(ctx, &row, l.db.Rebind(`SELECT body, salt, usager_id FROM audit_events WHERE idx = ?`), index)
	if err != nil {
		return nil, store.NotFound(err, fmt.Sprintf("event %d", index))
	}
	if usagerID != "" && (row.Usager == nil || *row.Usager != usagerID) {
		return nil, ErrOtherUsager
	}
	ev, err := ParseEvent(row.Body)
	if err != nil {
		return nil, err
	}
	return &Entry{Index: index, Body: row.Body, Salt: row.Salt, Event: ev}, nil
}

// ErrOtherUsager is an event that concerns someone else.
var ErrOtherUsager = errors.New("audit: event of another person")
