// Package monitor checks an Aidants journal from outside, with no account
// and nothing but what the instance publishes (SPEC §6.1): its checkpoint,
// cosigned by witnesses, and its tiles. It is what an administration, an
// association or a journalist runs from cron to know that the journal they
// saw yesterday is a prefix of the one served today, that the witnesses
// they trust agree, and that every entry served hashes to the tree.
package monitor

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/audit"
	"aidants/witness"
)

// Options configures a check.
type Options struct {
	// BaseURL is the instance's public URL, to which "/audit/" is
	// appended; or the prefix of one origin of its journal, ending in
	// "/audit/origins/<no>/".
	BaseURL string
	// Key is the log's note verifier key, from a source the caller trusts.
	Key string
	// Witnesses are the witnesses' cosignature verifier keys the caller
	// trusts, and Quorum how many of them must have cosigned.
	Witnesses []string
	Quorum    int
	// State is the checkpoint kept from the previous run (nil: none, the
	// first run trusts what it sees).
	State []byte
	// MaxAge, when set, is the oldest the quorum's cosignatures may be (by
	// the witnesses' clocks): an instance that keeps serving an old
	// checkpoint is a problem too.
	MaxAge     time.Duration
	Now        func() time.Time
	HTTPClient *http.Client
}

// Result is a checkpoint that passed.
type Result struct {
	Checkpoint *audit.Checkpoint
	Note       []byte   // what to keep for the next run
	Witnesses  []string // who cosigned it
	Entries    int64    // entries fetched and checked through the tiles
	First      bool     // no previous state: trusted as seen
}

// Problem is an inconsistency found in the journal: a fork, a shrink, a
// bad signature or cosignature, a tile that does not hash to the tree.
type Problem struct{ Msg string }

func (p *Problem) Error() string { return p.Msg }

// Check fetches the instance's checkpoint and tiles and checks them.
func Check(ctx context.Context, o Options) (*Result, error) {
	vkey := strings.TrimSpace(o.Key)
	logV, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("monitor: the log's key: %w", err)
	}
	var ws []*witness.Verifier
	for _, k := range o.Witnesses {
		v, err := witness.ParseVerifierKey(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("monitor: witness key %q: %w", k, err)
		}
		ws = append(ws, v)
	}
	if o.Quorum > len(ws) {
		return nil, fmt.Errorf("monitor: a quorum of %d needs as many --witness keys (%d given)", o.Quorum, len(ws))
	}
	base := strings.TrimSuffix(o.BaseURL, "/") + "/audit/"
	if strings.Contains(o.BaseURL, "/audit/origins/") {
		base = strings.TrimSuffix(o.BaseURL, "/") + "/"
	}
	opts := []torchwood.TileFetcherOption{torchwood.WithUserAgent("aidants-monitor")}
	if o.HTTPClient != nil {
		opts = append(opts, torchwood.WithHTTPClient(o.HTTPClient))
	}
	f, err := torchwood.NewTileFetcher(base, opts...)
	if err != nil {
		return nil, err
	}
	msg, err := f.ReadEndpoint(ctx, "checkpoint")
	if err != nil {
		return nil, fmt.Errorf("monitor: fetch %scheckpoint: %w", base, err)
	}
	_, by, err := witness.Cosigned(msg, logV, ws)
	if err != nil {
		return nil, &Problem{fmt.Sprintf("the checkpoint's signatures do not verify with the log's key and the witnesses' keys given: %v", err)}
	}
	cp, err := audit.ParseCheckpoint(msg, vkey)
	if err != nil {
		return nil, &Problem{fmt.Sprintf("the checkpoint is not the log's: %v", err)}
	}
	res := &Result{Checkpoint: cp, Note: msg}
	for _, c := range by {
		res.Witnesses = append(res.Witnesses, witness.Label(c.Name))
	}
	if len(by) < o.Quorum {
		return nil, &Problem{fmt.Sprintf("the checkpoint of %d events is cosigned by %d of the witnesses given, %d required", cp.Size, len(by), o.Quorum)}
	}
	if o.MaxAge > 0 && o.Quorum > 0 {
		now := time.Now
		if o.Now != nil {
			now = o.Now
		}
		times := make([]time.Time, len(by))
		for i, c := range by {
			times[i] = c.Time
		}
		slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
		if age := now().Sub(times[o.Quorum-1]); age > o.MaxAge {
			return nil, &Problem{fmt.Sprintf("the checkpoint served was cosigned %s ago, more than --max-age %s: the instance no longer has its journal witnessed", age.Round(time.Second), o.MaxAge)}
		}
	}
	tree := tlog.Tree{N: cp.Size, Hash: cp.Root}
	var from int64
	if o.State == nil {
		res.First = true
	} else {
		old, err := audit.ParseCheckpoint(o.State, vkey)
		if err != nil {
			return nil, fmt.Errorf("monitor: the kept checkpoint does not verify with the log's key: %w", err)
		}
		switch {
		case cp.Size < old.Size:
			return nil, &Problem{fmt.Sprintf("the journal shrank: %d events served, %d seen before", cp.Size, old.Size)}
		case cp.Size == old.Size && cp.Root != old.Root:
			return nil, &Problem{fmt.Sprintf("fork: another history of %d events than the one seen before", cp.Size)}
		case cp.Size > old.Size:
			// The old tree hash, recomputed from the new tree's tiles
			// (each checked against the new root), must be the old root.
			root, err := tlog.TreeHash(old.Size, torchwood.TileHashReaderWithContext(ctx, tree, f))
			if err != nil {
				return nil, &Problem{fmt.Sprintf("the tiles do not hash to the tree of %d events: %v", cp.Size, err)}
			}
			if root != old.Root {
				return nil, &Problem{fmt.Sprintf("fork: the first %d events served are not those seen before", old.Size)}
			}
		}
		from = old.Size
	}
	n, err := readEntries(ctx, f, tree, from)
	res.Entries = n
	if err != nil {
		return nil, &Problem{fmt.Sprintf("an entry bundle does not hash to the tree: %v", err)}
	}
	return res, nil
}

// readEntries fetches the entries [from, tree.N) through the tiles, each
// checked against the tree: torchwood's client up to the last full tile,
// then the trailing partial tile entry by entry with an inclusion proof.
func readEntries(ctx context.Context, f *torchwood.TileFetcher, tree tlog.Tree, from int64) (int64, error) {
	c, err := torchwood.NewClient(f, torchwood.WithTimeout(time.Minute))
	if err != nil {
		return 0, err
	}
	var n int64
	next := from
	for i, e := range c.Entries(ctx, tree, from) {
		if i != next || len(e) != audit.EntrySize {
			return n, fmt.Errorf("entry %d is not a %d-byte commitment", i, audit.EntrySize)
		}
		next++
		n++
	}
	if err := c.Err(); err != nil {
		return n, err
	}
	for ; next < tree.N; next++ {
		e, _, err := c.Entry(ctx, tree, next)
		if err != nil {
			return n, err
		}
		if len(e) != audit.EntrySize {
			return n, fmt.Errorf("entry %d is not a %d-byte commitment", next, audit.EntrySize)
		}
		n++
	}
	return n, nil
}

// Line is the one line a run prints.
func (r *Result) Line() string {
	ws := "no witness"
	if len(r.Witnesses) > 0 {
		ws = "cosigned by " + strings.Join(r.Witnesses, ", ")
	}
	first := ""
	if r.First {
		first = " (first run: trusted as seen, kept for the next run)"
	}
	return fmt.Sprintf("audit monitor: OK: %s, %d events, root %s, %s; %d new entries checked through the tiles%s",
		r.Checkpoint.Origin, r.Checkpoint.Size, base64.StdEncoding.EncodeToString(r.Checkpoint.Root[:]), ws, r.Entries, first)
}

// IsProblem tells whether err is an inconsistency of the journal (as
// opposed to the monitor's own trouble: network, arguments).
func IsProblem(err error) bool {
	var p *Problem
	return errors.As(err, &p)
}
