package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrNotWitnessed is returned when no checkpoint of the origin has been
// cosigned by the witnesses yet.
var ErrNotWitnessed = errors.New("audit: no checkpoint has been witnessed yet")

// Witnessed is a checkpoint that reached the witness quorum.
type Witnessed struct {
	Checkpoint           // Note holds the signed checkpoint with the cosignatures appended
	At         time.Time // when the instance stored it
}

// Witnessed returns the current origin's newest witnessed checkpoint, or
// ErrNotWitnessed.
func (l *Log) Witnessed(ctx context.Context) (*Witnessed, error) {
	var row struct {
		Note []byte `db:"note"`
		At   int64  `db:"created_at"`
	}
	err := l.db.R.GetContext(ctx, &row, l.db.Rebind(`SELECT note, created_at FROM audit_witnessed WHERE origin_no = ? ORDER BY id DESC LIMIT 1`), l.cur.No)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotWitnessed
	}
	if err != nil {
		return nil, fmt.Errorf("audit: witnessed checkpoint: %w", err)
	}
	cp, err := ParseCheckpoint(row.Note, l.vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: witnessed checkpoint: %w", err)
	}
	return &Witnessed{Checkpoint: *cp, At: time.UnixMilli(row.At)}, nil
}

// witnessedOf returns origin o's newest witnessed checkpoint.
func (l *Log) witnessedOf(ctx context.Context, o *Origin) (*Checkpoint, error) {
	var msg []byte
	err := l.db.R.GetContext(ctx, &msg, l.db.Rebind(`SELECT note FROM audit_witnessed WHERE origin_no = ? ORDER BY id DESC LIMIT 1`), o.No)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotWitnessed
	}
	if err != nil {
		return nil, fmt.Errorf("audit: witnessed checkpoint: %w", err)
	}
	return ParseCheckpoint(msg, o.VKey)
}

// StoreWitnessed keeps a checkpoint of the current origin with the
// cosignatures that brought it to the quorum (cosigned: the signed note
// with the cosignature lines appended). A checkpoint older than the newest
// stored one is ignored; the same size again is kept when its
// cosignatures differ (the quorum or the witnesses changed). It goes
// through the writer, like every write, as a unit without events.
func (l *Log) StoreWitnessed(ctx context.Context, cosigned []byte) error {
	cp, err := ParseCheckpoint(cosigned, l.vkey)
	if err != nil {
		return err
	}
	return l.Write(ctx, func(tx *Tx) error {
		var newest struct {
			ID    int64  `db:"id"`
			GSize int64  `db:"gsize"`
			Note  []byte `db:"note"`
		}
		err := tx.Get(&newest, `SELECT id, gsize, note FROM audit_witnessed ORDER BY id DESC LIMIT 1`)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		gsize := l.cur.Start + cp.Size
		if gsize < newest.GSize || (gsize == newest.GSize && bytes.Equal(cosigned, newest.Note)) {
			return nil
		}
		var signed []byte
		if err := tx.Get(&signed, `SELECT note FROM audit_checkpoints WHERE gsize = ?`, gsize); err != nil {
			return fmt.Errorf("audit: witnessed checkpoint of size %d is not one of the log's: %w", cp.Size, err)
		}
		if c, err := parseUnverified(signed); err != nil || c.Root != cp.Root || c.Origin != cp.Origin {
			return fmt.Errorf("audit: witnessed checkpoint of size %d is not the log's", cp.Size)
		}
		_, err = tx.Exec(`INSERT INTO audit_witnessed (id, gsize, origin_no, size, note, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			newest.ID+1, gsize, l.cur.No, cp.Size, cosigned, tx.Now().UnixMilli())
		return err
	})
}
