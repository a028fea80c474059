package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"
)

// The instance remembers, outside its database, the newest checkpoint its
// witnesses cosigned (the witness state file, SPEC §6.1): never part of a
// backup, never restored from one. A database that is behind it or
// inconsistent with it — an older backup restored, a file swapped — would
// let the instance write a second history under an origin whose first one
// the world has already seen; it is refused.

// RollbackError says that the database is behind, or not an extension
// of, a checkpoint kept outside it. Its message says what was found and
// what to do, in one line.
type RollbackError struct{ Msg string }

func (e *RollbackError) Error() string { return e.Msg }

// ReadStateFile returns the checkpoint kept in path, or nil when there is
// no such file yet.
func ReadStateFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: witness state file: %w", err)
	}
	return b, nil
}

// WriteStateFile replaces the checkpoint kept in path, atomically and
// durably: a crash leaves the old one or the new one.
func WriteStateFile(path string, note []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("audit: witness state file: %w", err)
	}
	f, err := os.CreateTemp(dir, ".witness-state-*")
	if err != nil {
		return fmt.Errorf("audit: witness state file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(note); err != nil {
		f.Close()
		return fmt.Errorf("audit: witness state file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: witness state file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit: witness state file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("audit: witness state file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// CheckState compares the log with a checkpoint kept outside its database
// (source names where, for the message): the current origin must reach
// it and agree with it (the head and the tree's right edge only: no scan),
// or, for a checkpoint of an earlier origin, the origin after it must
// record it in its first event. It returns a *RollbackError otherwise.
func (l *Log) CheckState(ctx context.Context, kept []byte, source string) error {
	cp, err := parseUnverified(kept)
	if err != nil {
		return &RollbackError{fmt.Sprintf("the witness state file %s cannot be read (%v): restore it from a healthy copy (aidants audit checkpoint), or move it away: the witnesses are still asked at start", source, err)}
	}
	origins, err := Origins(ctx, l.db)
	if err != nil {
		return err
	}
	k := -1
	for i, o := range origins {
		if o.Name == cp.Origin {
			k = i
		}
	}
	if k < 0 {
		return &RollbackError{fmt.Sprintf("the witness state file %s holds a checkpoint of origin %q, which this database never had: it is another instance's database or file", source, cp.Origin)}
	}
	o := origins[k]
	if cp, err = ParseCheckpoint(kept, o.VKey); err != nil {
		return &RollbackError{fmt.Sprintf("the checkpoint in the witness state file %s does not verify with the key of origin %q: %v", source, o.Name, err)}
	}
	if k < len(origins)-1 {
		return l.checkRecorded(ctx, origins[k], origins[k+1], cp, source)
	}
	var size int64
	if err := l.db.R.GetContext(ctx, &size, `SELECT size FROM audit_head WHERE id = 1`); err != nil {
		return fmt.Errorf("audit: read head: %w", err)
	}
	if size < cp.Size {
		return &RollbackError{fmt.Sprintf("the journal in the database stops at %d events of origin %q, but its witnesses cosigned %d (kept in %s): an older backup was restored or the database replaced. Nothing will be written: restore a backup that reaches %d events, or continue the journal under a new origin with `aidants audit new-origin` (docs/WITNESSES.md)",
			size, o.Name, cp.Size, source, cp.Size)}
	}
	pr := l.proofs
	pr.base = o.HashBase
	root, err := tlog.TreeHash(cp.Size, pr)
	if err != nil {
		return fmt.Errorf("audit: tree hash at %d: %w", cp.Size, err)
	}
	if root != cp.Root {
		return &RollbackError{fmt.Sprintf("the first %d events of origin %q in the database are not those its witnesses cosigned (kept in %s): the database holds another history. Nothing will be written: restore a backup of this instance that reaches %d events, or continue the journal under a new origin with `aidants audit new-origin` (docs/WITNESSES.md)",
			cp.Size, o.Name, source, cp.Size)}
	}
	return nil
}

// checkRecorded checks a checkpoint cp of origin prev, which origin next
// follows: either the database holds prev up to cp, or next's first event
// records cp as where prev's witnessed history stopped.
func (l *Log) checkRecorded(ctx context.Context, prev, next Origin, cp *Checkpoint, source string) error {
	e, err := l.At(ctx, next.Start, "")
	if err != nil {
		return fmt.Errorf("audit: first event of origin %q: %w", next.Name, err)
	}
	d := e.Event.Detail
	refused := &RollbackError{fmt.Sprintf("origin %q does not record the checkpoint of size %d of origin %q that its witnesses cosigned (kept in %s)", next.Name, cp.Size, prev.Name, source)}
	if e.Event.Type != AuditOriginStarted || d["previous_origin"] != prev.Name {
		return refused
	}
	if cp.Size <= next.Start-prev.Start {
		pr := l.proofs
		pr.base = prev.HashBase
		root, err := tlog.TreeHash(cp.Size, pr)
		if err != nil {
			return fmt.Errorf("audit: tree hash at %d: %w", cp.Size, err)
		}
		if root != cp.Root {
			return refused
		}
		return nil
	}
	if fmt.Sprint(d["witnessed_size"]) != strconv.FormatInt(cp.Size, 10) || d["witnessed_root"] != base64.StdEncoding.EncodeToString(cp.Root[:]) {
		return refused
	}
	return nil
}

// Refuse makes every later Write fail with err: the log is readable, and
// nothing is appended to it (see CheckState).
func (l *Log) Refuse(err error) { l.refused.Store(&err) }

// Refused returns the error given to Refuse, if any.
func (l *Log) Refused() error {
	if p := l.refused.Load(); p != nil {
		return *p
	}
	return nil
}
