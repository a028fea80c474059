package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"aidants/store"
)

// Entry is a stored event with its index in the log.
type Entry struct {
	Index int64
	Body  []byte // the exact bytes hashed into the tree
	Event Event
}

// ErrNotFound is returned for an index the log does not hold, or does not
// hold for this person.
var ErrNotFound = store.ErrNotFound

// ForUsager returns the person's events, newest first, with an index below
// before (0 for the newest), at most limit of them. It reads the
// (usager_id, idx) index only: its cost does not grow with the log.
func (l *Log) ForUsager(ctx context.Context, usagerID string, before int64, limit int) ([]Entry, error) {
	q := `SELECT idx, body FROM audit_events WHERE usager_id = ?`
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
		if err := rows.Scan(&e.Index, &e.Body); err != nil {
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
		batch, err := l.entries(ctx, `SELECT idx, body FROM audit_events WHERE usager_id = ? AND idx > ? ORDER BY idx LIMIT 500`, usagerID, after)
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
		Usager *string `db:"usager_id"`
	}
	err := l.db.R.GetContext(ctx, &row, l.db.Rebind(`SELECT body, usager_id FROM audit_events WHERE idx = ?`), index)
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
	return &Entry{Index: index, Body: row.Body, Event: ev}, nil
}

// ErrOtherUsager is an event that concerns someone else.
var ErrOtherUsager = errors.New("audit: event of another person")

// ReceiptFormat names the receipt format (docs/RECEIPTS.md).
const ReceiptFormat = "aidants-receipt/1"

// Receipt lets anyone check, offline and with any RFC 6962 library, that
// an event is in the log the instance signed: the exact event bytes, their
// index, an inclusion proof up to a signed checkpoint, and the log's
// public key.
type Receipt struct {
	Format     string      `json:"format"`
	Origin     string      `json:"origin"`
	Key        string      `json:"key"`
	Checkpoint string      `json:"checkpoint"`
	Index      int64       `json:"index"`
	Size       int64       `json:"size"`
	Event      string      `json:"event"`
	LeafHash   tlog.Hash   `json:"leaf_hash"`
	Proof      []tlog.Hash `json:"proof"`
}

// ReceiptFor builds the receipt of the event at index, proved against the
// latest signed checkpoint. usagerID restricts it to the person's events.
func (l *Log) ReceiptFor(ctx context.Context, index int64, usagerID string) (*Receipt, error) {
	e, err := l.At(ctx, index, usagerID)
	if err != nil {
		return nil, err
	}
	cp, err := l.Latest(ctx)
	if err != nil {
		return nil, err
	}
	p, err := l.Inclusion(ctx, index, cp.Size)
	if err != nil {
		return nil, err
	}
	return &Receipt{Format: ReceiptFormat, Origin: l.origin, Key: l.vkey, Checkpoint: string(cp.Note), Index: index,
		Size: cp.Size, Event: string(e.Body), LeafHash: p.LeafHash, Proof: p.Hashes}, nil
}

// ReceiptError says why a receipt does not verify.
type ReceiptError struct{ Msg string }

func (e *ReceiptError) Error() string { return "receipt: " + e.Msg }

// VerifyReceipt checks a receipt offline against the log's public key
// (vkey, from a trusted source: never the receipt's own key alone): the
// checkpoint's signature, the event bytes' leaf hash, the inclusion proof
// up to the checkpoint's root. It returns the event.
func VerifyReceipt(data []byte, vkey string) (*Event, error) {
	var r Receipt
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, &ReceiptError{"not a receipt: " + err.Error()}
	}
	if r.Format != ReceiptFormat {
		return nil, &ReceiptError{fmt.Sprintf("unknown format %q", r.Format)}
	}
	if r.Key != vkey {
		return nil, &ReceiptError{"signed by another key than the log's"}
	}
	cp, err := ParseCheckpoint([]byte(r.Checkpoint), vkey)
	if err != nil {
		return nil, &ReceiptError{"the checkpoint does not verify with the log's key: " + err.Error()}
	}
	if cp.Size != r.Size || r.Index < 0 || r.Index >= cp.Size {
		return nil, &ReceiptError{fmt.Sprintf("index %d is not within the checkpoint's %d events", r.Index, cp.Size)}
	}
	leaf := tlog.RecordHash([]byte(r.Event))
	if leaf != r.LeafHash {
		return nil, &ReceiptError{"the event's hash is not the receipt's leaf: the event was modified"}
	}
	if err := tlog.CheckRecord(r.Proof, cp.Size, cp.Root, r.Index, leaf); err != nil {
		return nil, &ReceiptError{"the inclusion proof does not lead to the signed root: " + err.Error()}
	}
	ev, err := ParseEvent([]byte(r.Event))
	if err != nil {
		return nil, &ReceiptError{"the event cannot be read: " + err.Error()}
	}
	if b, _ := ev.Canonical(); string(b) != r.Event {
		return nil, &ReceiptError{"the event is not in canonical form"}
	}
	return &ev, nil
}
