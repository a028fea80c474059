package audit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/store"
)

// Origin is one of the log's successive origins. A log starts with one;
// when an operator must continue it after a rollback (an older backup
// restored below what the witnesses cosigned), it goes on under a new
// origin, never as a second history under the same one (SPEC §6.1). Each
// origin is a tree of its own: its leaf i is the event at global position
// Start+i, and its stored hash j is the audit_hashes row HashBase+j.
type Origin struct {
	No       int64  `db:"no"`
	Name     string `db:"origin"` // first line of its checkpoints, and its key's name
	VKey     string `db:"vkey"`   // note verifier key of its checkpoints
	Start    int64  `db:"start_idx"`
	HashBase int64  `db:"hash_base"`
	Created  int64  `db:"created_at"`
}

// ErrOriginMoved is returned by writes of a process whose origin is no
// longer the log's newest (another process started a new origin).
var ErrOriginMoved = errors.New("audit: the journal has moved to a newer origin; restart with its key")

// OriginMismatchError is returned by Open when the configured signing key
// is not the one of the log's current origin.
type OriginMismatchError struct {
	Current, Configured string
	KeyDiffers          bool // same origin name, another key
}

func (e *OriginMismatchError) Error() string {
	if e.KeyDiffers {
		return fmt.Sprintf("the journal's origin %q was signed with another key than the configured one: configure its key (audit.signing_key_file)", e.Current)
	}
	return fmt.Sprintf("the journal's current origin is %q but the configured signing key is for %q: configure the key of %q, or continue the journal under the new origin with `aidants audit new-origin` (docs/WITNESSES.md)",
		e.Current, e.Configured, e.Current)
}

// Origins lists the log's origins, oldest first.
func Origins(ctx context.Context, db *store.DB) ([]Origin, error) {
	var out []Origin
	if err := db.R.SelectContext(ctx, &out, `SELECT no, origin, vkey, start_idx, hash_base, created_at FROM audit_origins ORDER BY no`); err != nil {
		return nil, fmt.Errorf("audit: read origins: %w", err)
	}
	return out, nil
}

// registerOrigin returns the log's current origin, registering the
// configured one as the first when the log has none yet. It is part of
// opening the log, like a migration: it runs before any event.
func registerOrigin(ctx context.Context, db *store.DB, name, vkey string) (*Origin, error) {
	origins, err := Origins(ctx, db)
	if err != nil {
		return nil, err
	}
	if len(origins) == 0 {
		tx, err := db.W.BeginTxx(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("audit: register origin: %w", err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, db.Rebind(`INSERT INTO audit_origins (no, origin, vkey, start_idx, hash_base, created_at)
			VALUES (1, ?, ?, 0, 0, ?) ON CONFLICT DO NOTHING`), name, vkey, time.Now().UnixMilli()); err != nil {
			return nil, fmt.Errorf("audit: register origin: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE audit_head SET origin_no = 1 WHERE id = 1 AND origin_no = 0`); err != nil {
			return nil, fmt.Errorf("audit: register origin: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("audit: register origin: %w", err)
		}
		if origins, err = Origins(ctx, db); err != nil {
			return nil, err
		}
	}
	cur := origins[len(origins)-1]
	if cur.Name != name {
		return nil, &OriginMismatchError{Current: cur.Name, Configured: name}
	}
	if cur.VKey != vkey {
		return nil, &OriginMismatchError{Current: cur.Name, Configured: name, KeyDiffers: true}
	}
	return &cur, nil
}

// originOf returns the origin holding global position idx.
func originOf(origins []Origin, idx int64) (*Origin, error) {
	for i := len(origins) - 1; i >= 0; i-- {
		if idx >= origins[i].Start {
			return &origins[i], nil
		}
	}
	return nil, fmt.Errorf("audit: no origin holds position %d", idx)
}

// Previous describes how the previous origin ended, for the first event of
// the next one (audit.origin_started).
type Previous struct {
	// Witnessed is the newest checkpoint of the previous origin that its
	// witnesses cosigned (the instance's state file), if any.
	Witnessed *Checkpoint
	// Without it, WitnessedSize is the largest size the witnesses said
	// they hold of the previous origin, and WitnessedBy who said so.
	WitnessedSize int64
	WitnessedBy   []string
	// Reason is the operator's one-line account.
	Reason string
}

// StartOrigin continues the journal under a new origin, named after
// skey (the new signing key): in one transaction it registers the origin
// after the current one and appends its first event, audit.origin_started,
// which records where the previous origin stops in this database, the
// checkpoint its witnesses had cosigned and how many events are lost
// between the two. It is an offline operator step (no server may be
// appending): the only write that does not go through a Log's writer.
func StartOrigin(ctx context.Context, db *store.DB, skey string, prev Previous, now time.Time) (*Checkpoint, int64, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: signing key: %w", err)
	}
	vkey, err := VerifierKey(skey)
	if err != nil {
		return nil, 0, err
	}
	tx, err := db.W.BeginTxx(ctx, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: new origin: %w", err)
	}
	defer tx.Rollback()
	q := `SELECT origin_no, size, root FROM audit_head WHERE id = 1`
	if db.Dialect == store.Postgres {
		q += ` FOR UPDATE`
	}
	var head struct {
		Origin int64  `db:"origin_no"`
		Size   int64  `db:"size"`
		Root   []byte `db:"root"`
	}
	if err := tx.GetContext(ctx, &head, q); err != nil {
		return nil, 0, fmt.Errorf("audit: new origin: read head: %w", err)
	}
	var cur Origin
	if err := tx.GetContext(ctx, &cur, db.Rebind(`SELECT no, origin, vkey, start_idx, hash_base, created_at FROM audit_origins WHERE no = ?`), head.Origin); err != nil {
		return nil, 0, fmt.Errorf("audit: new origin: the journal has no origin yet: %w", err)
	}
	var used int
	if err := tx.GetContext(ctx, &used, db.Rebind(`SELECT COUNT(*) FROM audit_origins WHERE origin = ?`), signer.Name()); err != nil {
		return nil, 0, fmt.Errorf("audit: new origin: %w", err)
	}
	if used > 0 {
		return nil, 0, fmt.Errorf("audit: new origin: %q was already an origin of this journal: generate a key with a new origin name", signer.Name())
	}
	next := &Origin{No: cur.No + 1, Name: signer.Name(), VKey: vkey, Start: cur.Start + head.Size,
		HashBase: cur.HashBase + tlog.StoredHashCount(head.Size), Created: now.UnixMilli()}
	if _, err := tx.ExecContext(ctx, db.Rebind(`INSERT INTO audit_origins (no, origin, vkey, start_idx, hash_base, created_at) VALUES (?, ?, ?, ?, ?, ?)`),
		next.No, next.Name, next.VKey, next.Start, next.HashBase, next.Created); err != nil {
		return nil, 0, fmt.Errorf("audit: new origin: %w", err)
	}

	detail := map[string]any{"previous_origin": cur.Name, "previous_size": head.Size}
	if len(head.Root) == tlog.HashSize {
		detail["previous_root"] = base64.StdEncoding.EncodeToString(head.Root)
	}
	if w := prev.Witnessed; w != nil {
		detail["witnessed_size"] = w.Size
		detail["witnessed_root"] = base64.StdEncoding.EncodeToString(w.Root[:])
		detail["lost"] = max(w.Size-head.Size, 0)
	} else if prev.WitnessedSize > 0 || len(prev.WitnessedBy) > 0 {
		detail["witnessed_size"] = prev.WitnessedSize
		detail["witnessed_by"] = prev.WitnessedBy
		detail["lost"] = max(prev.WitnessedSize-head.Size, 0)
	}
	ev := Event{Type: AuditOriginStarted, Actor: Actor{Kind: ActorOperator, ID: "cli"}, Reason: prev.Reason, Detail: detail,
		Time: Time{now.UTC().Truncate(time.Millisecond)}}
	if err := ev.check(); err != nil {
		return nil, 0, err
	}
	body, err := ev.Canonical()
	if err != nil {
		return nil, 0, err
	}
	p := pending{leaf: 0, ev: &ev, body: body}
	if _, err := rand.Read(p.salt[:]); err != nil {
		return nil, 0, fmt.Errorf("audit: salt: %w", err)
	}
	p.entry = EntryOf(p.salt[:], body)
	leaf := tlog.RecordHash(p.entry[:])
	if err := insertEvents(tx, db, next.Start, []pending{p}); err != nil {
		return nil, 0, err
	}
	if err := insertHashes(tx, db, []hashRow{{id: next.HashBase, hash: leaf}}); err != nil {
		return nil, 0, err
	}
	l := &Log{signer: signer, origin: signer.Name()}
	cp, err := l.sign(1, leaf)
	if err != nil {
		return nil, 0, err
	}
	if err := moveHead(tx, db, next, cp, now); err != nil {
		return nil, 0, err
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, fmt.Errorf("audit: new origin: commit: %w", err)
	}
	return cp, next.Start, nil
}

// Locate returns the origin holding the event at global position idx and
// the event's leaf index in that origin's tree (the index its inclusion
// proofs use).
func (l *Log) Locate(ctx context.Context, idx int64) (origin string, leaf int64, err error) {
	if idx >= l.cur.Start {
		return l.cur.Name, idx - l.cur.Start, nil
	}
	origins, err := Origins(ctx, l.db)
	if err != nil {
		return "", 0, err
	}
	o, err := originOf(origins, idx)
	if err != nil {
		return "", 0, err
	}
	return o.Name, idx - o.Start, nil
}

// OriginNo is the number of the origin this process appends to.
func (l *Log) OriginNo() int64 { return l.cur.No }
