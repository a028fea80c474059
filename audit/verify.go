package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/store"
)

// TamperError reports the first index at which the stored log stops being
// what was signed, or (Index -1) what was changed beside it: a free text
// that no longer hashes to what its event carries.
type TamperError struct {
	Index int64
	Msg   string
}

func (e *TamperError) Error() string {
	if e.Index < 0 { // beside the journal, not in it
		return e.Msg
	}
	return fmt.Sprintf("index %d: %s", e.Index, e.Msg)
}

// VerifyResult describes a log that verified.
type VerifyResult struct {
	Size        int64 // events, all origins together
	Root        tlog.Hash
	Origin      string // the current origin, whose tree Root is
	Origins     int
	Checkpoints int64 // stored checkpoints whose root matched
	Witnessed   int64 // stored witnessed checkpoints whose root matched
	Columns     int64 // events whose queryable columns matched their body
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
		return tlog.Hash{}
	}
	h := t.hashes[len(t.hashes)-1]
	for i := len(t.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(t.hashes[i], h)
	}
	return h
}

// Verify recomputes every entry and leaf from the stored event bodies and
// salts, every queryable column from the bodies, every stored hash and
// root, and checks them against the log head, every stored checkpoint and
// witnessed checkpoint, and the signature of each origin's latest
// checkpoint (the current origin's with vkey). When old is not nil (a
// checkpoint kept elsewhere, already verified), the log must extend it. A
// tampered log gives a *TamperError naming the first bad index.
func Verify(ctx context.Context, db *store.DB, vkey string, old *Checkpoint) (*VerifyResult, error) {
	var olds []*Checkpoint
	if old != nil {
		olds = append(olds, old)
	}
	return VerifyLog(ctx, db, vkey, olds...)
}

// VerifyLog is Verify with any number of checkpoints kept elsewhere (a
// monitor's, the witness state file's), possibly of earlier origins.
func VerifyLog(ctx context.Context, db *store.DB, vkey string, olds ...*Checkpoint) (*VerifyResult, error) {
	return VerifyWith(ctx, db, vkey, VerifyOptions{Old: olds})
}

// VerifyOptions tunes VerifyWith.
type VerifyOptions struct {
	// Old lists checkpoints kept elsewhere that the log must extend.
	Old []*Checkpoint
	// BodiesOnly skips the columns: the baseline `make bench` measures
	// the full verification against. Never for anything else.
	BodiesOnly bool
	// Witnesses and Quorum, when given, check the cosignatures of each
	// origin's newest witnessed checkpoint.
	Witnesses []note.Verifier
	Quorum    int
}

// VerifyWith is Verify with options.
func VerifyWith(ctx context.Context, db *store.DB, vkey string, opts VerifyOptions) (*VerifyResult, error) {
	v, err := newVerifier(ctx, db, vkey, opts.Old)
	if err != nil {
		return nil, err
	}
	v.bodiesOnly, v.witnesses, v.quorum = opts.BodiesOnly, opts.Witnesses, opts.Quorum
	return v.run(ctx)
}

// verifier holds one run of VerifyLog.
type verifier struct {
	db      *store.DB
	origins []Origin
	verifs  []note.Verifier // per origin
	head    struct {
		Origin int64  `db:"origin_no"`
		Size   int64  `db:"size"`
		Root   []byte `db:"root"`
	}
	total      int64 // events, all origins
	olds       []*Checkpoint
	bodiesOnly bool
	witnesses  []note.Verifier
	quorum     int
	res        VerifyResult
}

func newVerifier(ctx context.Context, db *store.DB, vkey string, olds []*Checkpoint) (*verifier, error) {
	v := &verifier{db: db, olds: olds}
	if err := db.R.GetContext(ctx, &v.head, `SELECT origin_no, size, root FROM audit_head WHERE id = 1`); err != nil {
		return nil, fmt.Errorf("audit: verify: read head: %w", err)
	}
	var err error
	if v.origins, err = Origins(ctx, db); err != nil {
		return nil, err
	}
	if len(v.origins) == 0 {
		if v.head.Size != 0 {
			return nil, &TamperError{Index: 0, Msg: "the log has events but no origin"}
		}
		return v, nil
	}
	cur := v.origins[len(v.origins)-1]
	if v.head.Origin != cur.No {
		return nil, &TamperError{Index: cur.Start, Msg: fmt.Sprintf("the log head is at origin %d, not at the newest origin %q", v.head.Origin, cur.Name)}
	}
	if cur.VKey != vkey {
		return nil, &TamperError{Index: cur.Start, Msg: fmt.Sprintf("the current origin %q is recorded with another key than the configured one", cur.Name)}
	}
	var hashes int64
	for i, o := range v.origins {
		if o.HashBase != hashes || (i > 0 && o.Start < v.origins[i-1].Start) || (i == 0 && o.Start != 0) {
			return nil, &TamperError{Index: o.Start, Msg: fmt.Sprintf("origin %q does not start where the previous one ends", o.Name)}
		}
		nv, err := note.NewVerifier(o.VKey)
		if err != nil || nv.Name() != o.Name {
			return nil, &TamperError{Index: o.Start, Msg: fmt.Sprintf("origin %q has no valid key", o.Name)}
		}
		v.verifs = append(v.verifs, nv)
		if i+1 < len(v.origins) {
			hashes += tlog.StoredHashCount(v.origins[i+1].Start - o.Start)
		}
	}
	v.total = cur.Start + v.head.Size
	for _, old := range olds {
		o := v.originNamed(old.Origin)
		if o < 0 {
			return nil, &TamperError{Index: v.total, Msg: fmt.Sprintf("the log has no origin %q, that of a checkpoint kept elsewhere (size %d)", old.Origin, old.Size)}
		}
		if end := v.end(o); old.Size > end-v.origins[o].Start && o == len(v.origins)-1 {
			return nil, &TamperError{Index: end, Msg: fmt.Sprintf("the log has %d events but a checkpoint kept elsewhere signed %d: truncated", end-v.origins[o].Start, old.Size)}
		}
	}
	return v, nil
}

func (v *verifier) originNamed(name string) int {
	for i, o := range v.origins {
		if o.Name == name {
			return i
		}
	}
	return -1
}

// end is the global position after origin i's last event.
func (v *verifier) end(i int) int64 {
	if i+1 < len(v.origins) {
		return v.origins[i+1].Start
	}
	return v.total
}

// cpRow is a stored checkpoint, in the order of its global size.
type cpRow struct {
	gsize  int64
	origin int64
	size   int64
	note   []byte
}

func (v *verifier) run(ctx context.Context) (*VerifyResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	evc, evErr := streamEvents(ctx, v.db, v.bodiesOnly)
	// Hashes are read in id order; each id must be the next one.
	hc, hErr := streamRows(ctx, v.db, `SELECT id, hash FROM audit_hashes ORDER BY id`)
	cpc, cpErr := streamCheckpoints(ctx, v.db, `SELECT gsize, origin_no, size, note FROM audit_checkpoints ORDER BY gsize`)
	wc, wErr := streamCheckpoints(ctx, v.db, `SELECT gsize, origin_no, size, note FROM audit_witnessed ORDER BY id`)
	// Stored full tiles, read into cpRow as (n, origin_no, level, data).
	tc, tErr := streamCheckpoints(ctx, v.db, `SELECT n, origin_no, level, data FROM audit_tiles ORDER BY origin_no, n, level`)
	defer func() {
		// Stop the readers early on a verdict, then wait for them.
		cancel()
		drain(evc)
		drain(hc)
		drain(cpc)
		drain(wc)
		drain(tc)
	}()
	evs, hs := &evCursor{c: evc}, &cursor{c: hc}
	cps, ws, tiles := &cpCursor{c: cpc}, &cpCursor{c: wc}, &cpCursor{c: tc}
	edge := (*tileEdge)(nil).clone()

	var t tree
	var want []tlog.Hash
	nextHashID := int64(0)
	oi := -1
	var last, lastW *cpRow // the current origin's latest stored and witnessed checkpoints
	roots := make([]tlog.Hash, len(v.origins))
	for i := int64(0); i < v.total; i++ {
		// Move to the origin holding i, past any origin without events.
		for oi+1 < len(v.origins) && i == v.origins[oi+1].Start {
			if oi >= 0 {
				if err := v.closeOrigin(oi, last, lastW, &t, i); err != nil {
					return nil, err
				}
				roots[oi] = t.root()
			}
			oi++
			t, last, lastW = tree{}, nil, nil
			edge.reset()
		}
		o := &v.origins[oi]
		r, ok := evs.next()
		if !ok {
			if err := *evErr; err != nil {
				return nil, err
			}
			return nil, &TamperError{Index: i, Msg: "event is missing: deleted"}
		}
		if r.idx != i {
			if r.idx > i {
				return nil, &TamperError{Index: i, Msg: "event is missing: deleted"}
			}
			return nil, &TamperError{Index: i, Msg: "event indexes are out of order"}
		}
		want = t.add(r.leaf, want)
		for j, h := range want {
			id, stored, ok := hs.next()
			if !ok {
				if err := *hErr; err != nil {
					return nil, err
				}
				return nil, &TamperError{Index: i, Msg: "stored hashes are missing"}
			}
			if id != nextHashID {
				return nil, &TamperError{Index: i, Msg: fmt.Sprintf("stored hash %d is numbered %d: inserted, deleted or renumbered", nextHashID, id)}
			}
			if !bytes.Equal(stored, h[:]) {
				if j == 0 {
					return nil, &TamperError{Index: i, Msg: "event does not match its stored hash: edited, inserted or reordered"}
				}
				return nil, &TamperError{Index: i, Msg: "a stored tree hash does not match the events"}
			}
			nextHashID++
		}
		if edge.add(r.leaf, r.entry) {
			n := (i - o.Start) / TileWidth
			for _, want := range edge.rows(o.No, n) {
				st, ok := tiles.peek()
				if !ok || st.origin != o.No || st.gsize != n || st.size != want.level {
					return nil, &TamperError{Index: i, Msg: fmt.Sprintf("the stored tile %d of level %d is missing", n, want.level)}
				}
				if !bytes.Equal(st.note, want.data) {
					return nil, &TamperError{Index: i, Msg: fmt.Sprintf("the stored tile %d of level %d does not match the events", n, want.level)}
				}
				tiles.take()
			}
			edge.reset()
		}
		if r.badColumn != "" {
			return nil, &TamperError{Index: i, Msg: fmt.Sprintf("the stored %s column differs from the event's body: edited", r.badColumn)}
		}
		if !v.bodiesOnly {
			v.res.Columns++
		}
		size := i + 1 - o.Start
		var root tlog.Hash
		var rooted bool
		rootAt := func() tlog.Hash {
			if !rooted {
				root, rooted = t.root(), true
			}
			return root
		}
		for {
			c, ok := cps.peek()
			if !ok || c.gsize > i+1 {
				break
			}
			cps.take()
			if c.gsize < i+1 || c.origin != o.No || c.size != size {
				return nil, &TamperError{Index: i, Msg: fmt.Sprintf("a stored checkpoint of size %d does not belong to the log: inserted", c.size)}
			}
			cp, err := parseUnverified(c.note)
			if err != nil || cp.Root != rootAt() || cp.Size != size || cp.Origin != o.Name {
				return nil, &TamperError{Index: i, Msg: fmt.Sprintf("the stored checkpoint of size %d does not match the events", size)}
			}
			last = &c
			v.res.Checkpoints++
		}
		for {
			c, ok := ws.peek()
			if !ok || c.gsize > i+1 {
				break
			}
			ws.take()
			cp, err := parseUnverified(c.note)
			if err != nil || c.gsize < i+1 || c.origin != o.No || cp.Root != rootAt() || cp.Size != size || cp.Origin != o.Name {
				return nil, &TamperError{Index: i, Msg: fmt.Sprintf("the stored witnessed checkpoint of size %d does not match the events", c.size)}
			}
			lastW = &c
			v.res.Witnessed++
		}
		for _, old := range v.olds {
			if old.Origin == o.Name && old.Size == size && old.Root != rootAt() {
				return nil, &TamperError{Index: i, Msg: fmt.Sprintf("the first %d events of origin %q are not those of a checkpoint kept elsewhere: history rewritten", size, o.Name)}
			}
		}
	}
	if r, ok := evs.next(); ok {
		return nil, &TamperError{Index: r.idx, Msg: "event past the log head: inserted"}
	}
	if err := *evErr; err != nil {
		return nil, err
	}
	if _, _, ok := hs.next(); ok {
		return nil, &TamperError{Index: v.total, Msg: fmt.Sprintf("stored hash %d past the log head: inserted", nextHashID)}
	}
	if err := *hErr; err != nil {
		return nil, err
	}
	for _, c := range []*cpCursor{cps, ws} {
		if r, ok := c.peek(); ok {
			return nil, &TamperError{Index: v.total, Msg: fmt.Sprintf("a stored checkpoint of size %d past the log head: truncated", r.size)}
		}
	}
	if r, ok := tiles.peek(); ok {
		return nil, &TamperError{Index: v.total, Msg: fmt.Sprintf("a stored tile %d of level %d past the log head: inserted", r.gsize, r.size)}
	}
	if err := errors.Join(*cpErr, *wErr, *tErr); err != nil {
		return nil, err
	}
	if oi >= 0 {
		if err := v.closeOrigin(oi, last, lastW, &t, v.total); err != nil {
			return nil, err
		}
		roots[oi] = t.root()
		v.res.Root = roots[oi]
		if !bytes.Equal(v.head.Root, v.res.Root[:]) {
			return nil, &TamperError{Index: v.total - 1, Msg: "the log head's root does not match the events"}
		}
	}
	if err := v.checkSuccessions(ctx, roots); err != nil {
		return nil, err
	}
	if problems, err := checkFreeTexts(ctx, v.db); err != nil {
		return nil, err
	} else if len(problems) > 0 {
		return nil, &TamperError{Index: -1, Msg: problems[0]}
	}
	v.res.Size, v.res.Origins = v.total, len(v.origins)
	if len(v.origins) > 0 {
		v.res.Origin = v.origins[len(v.origins)-1].Name
	}
	return &v.res, nil
}

// closeOrigin checks an origin once its last event is read: its latest
// checkpoint covers all its events and is signed by its key; its newest
// witnessed checkpoint is signed by its key and, when witnesses are given,
// cosigned by the quorum. (Each stored checkpoint's root was checked
// against the events; checking every signature would cost an Ed25519
// verification per batch.)
func (v *verifier) closeOrigin(oi int, last, lastW *cpRow, t *tree, end int64) error {
	o := v.origins[oi]
	n := end - o.Start
	if n == 0 {
		return nil
	}
	if last == nil {
		return &TamperError{Index: o.Start, Msg: fmt.Sprintf("no signed checkpoint covers origin %q", o.Name)}
	}
	if last.size < n {
		return &TamperError{Index: o.Start + last.size, Msg: "events past the latest signed checkpoint: inserted"}
	}
	if _, err := note.Open(last.note, note.VerifierList(v.verifs[oi])); err != nil {
		return &TamperError{Index: end - 1, Msg: "the latest checkpoint's signature does not verify: " + err.Error()}
	}
	if lastW != nil {
		at := o.Start + lastW.size - 1
		n, err := note.Open(lastW.note, note.VerifierList(append([]note.Verifier{v.verifs[oi]}, v.witnesses...)...))
		if err != nil {
			return &TamperError{Index: at, Msg: "the newest witnessed checkpoint's signatures do not verify: " + err.Error()}
		}
		cosigned := 0
		for _, s := range n.Sigs {
			if s.Name != v.verifs[oi].Name() || s.Hash != v.verifs[oi].KeyHash() {
				cosigned++
			}
		}
		if len(n.Sigs) == cosigned {
			return &TamperError{Index: at, Msg: "the newest witnessed checkpoint is not signed by the log's key"}
		}
		if cosigned < v.quorum {
			return &TamperError{Index: at, Msg: fmt.Sprintf("the newest witnessed checkpoint carries %d of the %d cosignatures required", cosigned, v.quorum)}
		}
	}
	return nil
}

// checkSuccessions checks that each origin after the first begins with an
// audit.origin_started event recording where the previous one stops in
// this database, and the witnessed checkpoints kept elsewhere of an origin
// that the database does not reach.
func (v *verifier) checkSuccessions(ctx context.Context, roots []tlog.Hash) error {
	for k := 1; k < len(v.origins); k++ {
		prev, o := v.origins[k-1], v.origins[k]
		var body []byte
		if err := v.db.R.GetContext(ctx, &body, v.db.Rebind(`SELECT body FROM audit_events WHERE idx = ?`), o.Start); err != nil {
			return &TamperError{Index: o.Start, Msg: fmt.Sprintf("origin %q has no first event", o.Name)}
		}
		ev, err := ParseEvent(body)
		d := ev.Detail
		prevSize := o.Start - prev.Start
		if err != nil || ev.Type != AuditOriginStarted || d["previous_origin"] != prev.Name ||
			fmt.Sprint(d["previous_size"]) != strconv.FormatInt(prevSize, 10) ||
			(prevSize > 0 && d["previous_root"] != base64.StdEncoding.EncodeToString(roots[k-1][:])) {
			return &TamperError{Index: o.Start, Msg: fmt.Sprintf("the first event of origin %q does not record the end of origin %q", o.Name, prev.Name)}
		}
		for _, old := range v.olds {
			if old.Origin == prev.Name && old.Size > prevSize &&
				(fmt.Sprint(d["witnessed_size"]) != strconv.FormatInt(old.Size, 10) || d["witnessed_root"] != base64.StdEncoding.EncodeToString(old.Root[:])) {
				return &TamperError{Index: o.Start, Msg: fmt.Sprintf("origin %q stops at %d events, below a checkpoint of size %d kept elsewhere that origin %q does not record",
					prev.Name, prevSize, old.Size, o.Name)}
			}
		}
	}
	return nil
}

// parseUnverified reads a checkpoint's origin, size and root without
// checking its signature.
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
	n, err := strconv.ParseInt(string(lines[1]), 10, 64)
	if err != nil {
		return nil, err
	}
	cp.Size = n
	h, err := tlog.ParseHash(string(lines[2]))
	if err != nil {
		return nil, err
	}
	cp.Root = h
	return cp, nil
}
