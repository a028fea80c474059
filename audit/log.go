package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"aidants/store"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit: log closed")

// refusal is the error of a write to a refused journal: its own message,
// and unavailable for the callers that answer people (503).
type refusal struct{ err error }

func (r refusal) Error() string        { return r.err.Error() }
func (r refusal) Unwrap() error        { return r.err }
func (r refusal) Is(target error) bool { return target == ErrUnavailable }

// ErrUnavailable wraps the errors of a database that cannot take writes
// for now (a full disk, a read-only file, a lost connection): the caller
// answers 503 and the writer recovers by itself once it can write again.
var ErrUnavailable = errors.New("audit: the database cannot take writes for now")

// Log is the journal of one database, and the only writer of that database
// in this process. Every change of state goes through Write, so that it is
// committed together with the events that record it.
type Log struct {
	db       *store.DB
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	origin   string
	logger   *slog.Logger

	// cur is the origin this process appends to: the newest one, whose
	// name and key are the configured signing key's.
	cur *Origin

	queue   chan *unit
	stop    chan struct{}
	stopped chan struct{}
	closing sync.Once
	mu      sync.RWMutex // guards closed
	closed  bool

	// Written by the writer goroutine only: the current origin's size and
	// the right edge of its tree (local stored-hash indexes).
	size     int64
	frontier map[int64]tlog.Hash
	edge     *tileEdge // the current origin's partial tile

	latest  atomic.Pointer[Checkpoint]
	refused atomic.Pointer[error] // set by Refuse: nothing may be appended
	failed  atomic.Pointer[error] // the last batch's failure, nil once one succeeds
	observe atomic.Pointer[func(units int, commit time.Duration)]
	watch   atomic.Pointer[Watcher]
	stats   Stats
	now     func() time.Time
	proofs  proofReader
}

// Stats counts what the writer did since the process started.
type Stats struct {
	Batches atomic.Int64
	Units   atomic.Int64
	Failed  atomic.Int64
	Events  atomic.Int64
	// Time spent running units, computing and inserting the batch's
	// events, hashes and checkpoint, and committing (fsync included).
	UnitNanos, AppendNanos, CommitNanos atomic.Int64
}

// Options configures Open.
type Options struct {
	// SigningKey is the note signer key (PRIVATE+KEY+<origin>+…). Its name
	// is the log's origin.
	SigningKey string
	Logger     *slog.Logger
	// MaxBatch bounds how many units one transaction takes (default 1024).
	MaxBatch int
	// Now is the clock of units (Tx.Now) and event times; tests move it.
	Now func() time.Time
}

type unit struct {
	ctx  context.Context
	fn   func(*Tx) error
	done chan error
}

// Open starts the writer of db. It reads the log head and the few hashes on
// the right edge of the tree (no scan), so it starts in constant time
// whatever the size of the log.
func Open(ctx context.Context, db *store.DB, opts Options) (*Log, error) {
	signer, err := note.NewSigner(opts.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("audit: signing key: %w", err)
	}
	vkey, err := VerifierKey(opts.SigningKey)
	if err != nil {
		return nil, err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Log{
		db: db, signer: signer, verifier: verifier, vkey: vkey, origin: signer.Name(),
		logger:  opts.Logger,
		now:     opts.Now,
		queue:   make(chan *unit, opts.MaxBatch),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	l.proofs = proofReader{db: db, cache: &hashCache{m: map[int64]tlog.Hash{}}}
	if l.cur, err = registerOrigin(ctx, db, l.origin, vkey); err != nil {
		return nil, err
	}
	l.proofs.base = l.cur.HashBase
	if err := l.loadLatest(ctx); err != nil {
		return nil, err
	}
	go l.run(opts.MaxBatch)
	return l, nil
}

// Origin is the first line of the log's checkpoints and its key name.
func (l *Log) Origin() string { return l.origin }

// VerifierKey is the public key of the log, in note verifier form.
func (l *Log) VerifierKey() string { return l.vkey }

// Now is the log's clock.
func (l *Log) Now() time.Time { return l.now() }

// Health is nil when the writer's last batch committed (or it has not
// written yet), else that batch's error: /readyz says so until a batch
// commits again.
func (l *Log) Health() error {
	if p := l.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Observe has f told of each committed batch: its units and how long the
// commit took (fsync included), for the metrics' histograms.
func (l *Log) Observe(f func(units int, commit time.Duration)) { l.observe.Store(&f) }

// Watcher is told of every event a unit appends, inside the unit's
// transaction, right after the event joined it: what it writes (a message
// queued in the outbox, say) commits or rolls back with the event. An error
// fails the Append, and so the unit. A Watcher must not call Append.
type Watcher func(tx *Tx, index int64, ev *Event) error

// Watch sets the Watcher of every event appended from now on (nil: none).
func (l *Log) Watch(w Watcher) {
	if w == nil {
		l.watch.Store(nil)
		return
	}
	l.watch.Store(&w)
}

// Stats returns the writer's counters.
func (l *Log) Stats() *Stats { return &l.stats }

// DB is the database the log writes to.
func (l *Log) DB() *store.DB { return l.db }

// Close stops accepting work, lets the writer finish what is queued and
// waits for it.
func (l *Log) Close() error {
	l.closing.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.stop)
	})
	<-l.stopped
	return nil
}

// Write runs fn inside the writer's transaction, in its own savepoint, and
// returns once the batch holding it is durably committed (nil) or fn's
// error, or the commit's error, once nothing of fn remains.
//
// fn runs on the writer goroutine: it must be short, must not block on
// anything slow, and must not call Write itself (that would deadlock). It
// may run its queries on tx and append events with tx.Append; what it reads
// is consistent with what it writes.
//
// If ctx ends before the writer takes the unit, Write returns ctx.Err() and
// fn never runs. Once taken, Write waits for the outcome, so that a nil
// error always means committed.
func (l *Log) Write(ctx context.Context, fn func(tx *Tx) error) error {
	if err := l.Refused(); err != nil {
		return refusal{err}
	}
	u := &unit{ctx: ctx, fn: fn, done: make(chan error, 1)}
	err := l.enqueue(ctx, u)
	if store.IsUnavailable(err) && !errors.Is(err, ErrUnavailable) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func (l *Log) enqueue(ctx context.Context, u *unit) error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.queue <- u:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return ctx.Err()
	}
	return <-u.done
}

func (l *Log) run(maxBatch int) {
	defer close(l.stopped)
	batch := make([]*unit, 0, maxBatch)
	for {
		var first *unit
		select {
		case first = <-l.queue:
		case <-l.stop:
			// Drain what was queued before Close.
			for {
				select {
				case u := <-l.queue:
					l.commit([]*unit{u})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		// Take whatever else is queued, without waiting for more.
	fill:
		for len(batch) < maxBatch {
			select {
			case u := <-l.queue:
				batch = append(batch, u)
			default:
				break fill
			}
		}
		l.commit(batch)
	}
}

// pending is an event appended by a unit, written at the end of the batch.
type pending struct {
	leaf  int64 // index in the current origin's tree
	ev    *Event
	body  []byte
	salt  [SaltSize]byte
	entry [EntrySize]byte
}

// Tx is a unit's view of the writer's transaction. Its query methods take
// '?' placeholders and rebind them for the engine.
type Tx struct {
	tx      *sqlx.Tx
	db      *store.DB
	now     time.Time
	start   int64 // global position of the current origin's leaf 0
	next    *int64
	pending *[]pending
	watch   *Watcher
	inWatch bool
}

// Dialect is the engine the transaction runs on.
func (t *Tx) Dialect() store.Dialect { return t.db.Dialect }

// Now is the instant the unit started, truncated to the millisecond: use it
// for every time the unit stores, so that rows and events agree.
func (t *Tx) Now() time.Time { return t.now }

// Exec runs a statement.
func (t *Tx) Exec(query string, args ...any) (sql.Result, error) {
	return t.tx.Exec(t.db.Rebind(query), args...)
}

// Get scans one row into dest; no row gives sql.ErrNoRows.
func (t *Tx) Get(dest any, query string, args ...any) error {
	return t.tx.Get(dest, t.db.Rebind(query), args...)
}

// Select scans every row into dest, a pointer to a slice.
func (t *Tx) Select(dest any, query string, args ...any) error {
	return t.tx.Select(dest, t.db.Rebind(query), args...)
}

// Append adds an event to the journal, in the same transaction as the
// unit's other changes, and returns its index in the log. The index is
// final once Write returns nil. A zero Time is set to Now.
func (t *Tx) Append(ev Event) (int64, error) {
	if ev.Time.IsZero() {
		ev.Time = Time{t.now}
	}
	ev.Time = Time{ev.Time.UTC().Truncate(time.Millisecond)}
	if err := ev.check(); err != nil {
		return 0, err
	}
	body, err := ev.Canonical()
	if err != nil {
		return 0, err
	}
	if !columnsValidUTF8(&ev) {
		// The body replaced invalid UTF-8 as encoding/json does; the
		// columns must say what the body says.
		if ev, err = ParseEvent(body); err != nil {
			return 0, err
		}
	}
	if t.inWatch {
		return 0, errors.New("audit: a watcher appended an event")
	}
	leaf := *t.next
	*t.next++
	*t.pending = append(*t.pending, pending{leaf: leaf, ev: &ev, body: body})
	if t.watch != nil {
		t.inWatch = true
		err := (*t.watch)(t, t.start+leaf, &ev)
		t.inWatch = false
		if err != nil {
			// The event leaves with what its watcher could not write.
			*t.pending = (*t.pending)[:len(*t.pending)-1]
			*t.next--
			return 0, err
		}
	}
	return t.start + leaf, nil
}

// commit runs one batch in one transaction and answers every unit.
func (l *Log) commit(batch []*unit) {
	results := make([]error, len(batch))
	err := l.runBatch(batch, results)
	if err != nil {
		if l.failed.Swap(&err) == nil { // once per outage, not per batch
			l.logger.Error("audit: the writer cannot commit; requests that write get 503 until it can", "units", len(batch), "err", err.Error())
		}
	} else if l.failed.Swap(nil) != nil {
		l.logger.Info("audit: the writer commits again")
	}
	// Counted before any unit is answered: a caller that reads the
	// counters after its Write returned sees its own unit counted.
	l.stats.Units.Add(int64(len(batch)))
	l.stats.Batches.Add(1)
	for i, u := range batch {
		if results[i] == nil && err != nil {
			results[i] = err
		}
		if results[i] != nil {
			l.stats.Failed.Add(1)
		}
		u.done <- results[i]
	}
}

func (l *Log) runBatch(batch []*unit, results []error) (err error) {
	ctx := context.Background()
	T0 := time.Now() // T0…T3 split the batch's time for Stats
	tx, err := l.begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	size, err := l.lockHead(tx)
	if err != nil {
		return err
	}
	next := size
	var evs []pending
	now := l.now().UTC().Truncate(time.Millisecond)
	ran := 0
	sp, err := prepareSavepoints(tx)
	if err != nil {
		return err
	}
	defer sp.close()
	evs = make([]pending, 0, 2*len(batch))
	utx := &Tx{tx: tx, db: l.db, now: now, start: l.cur.Start, next: &next, pending: &evs, watch: l.watch.Load()}
	for i, u := range batch {
		if err := u.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if _, err := sp.begin.Exec(); err != nil {
			return fmt.Errorf("audit: savepoint: %w", err)
		}
		mark, markNext := len(evs), next
		ferr := l.call(u, utx)
		if ferr != nil {
			if store.IsUnavailable(ferr) {
				// A full disk, an I/O error: SQLite has rolled the whole
				// transaction back, so every unit of the batch fails with
				// it, as unavailable.
				results[i] = ferr
				return fmt.Errorf("audit: %w", ferr)
			}
			if _, err := sp.rollback.Exec(); err != nil {
				return fmt.Errorf("audit: rollback to savepoint: %w (after %w)", err, ferr)
			}
			evs, next = evs[:mark], markNext
			results[i] = ferr
		} else {
			ran++
		}
		if _, err := sp.release.Exec(); err != nil {
			return fmt.Errorf("audit: release savepoint: %w", err)
		}
	}
	if ran == 0 {
		return tx.Rollback()
	}
	var cp *Checkpoint
	var added map[int64]tlog.Hash
	var edge *tileEdge
	T1 := time.Now()
	if len(evs) > 0 {
		cp, added, edge, err = l.appendEvents(tx, size, evs)
		if err != nil {
			return err
		}
	}
	T2 := time.Now()
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("audit: commit: %w", err)
	}
	T3 := time.Now()
	if f := l.observe.Load(); f != nil {
		(*f)(len(batch), T3.Sub(T2))
	}
	l.stats.UnitNanos.Add(int64(T1.Sub(T0)))
	l.stats.AppendNanos.Add(int64(T2.Sub(T1)))
	l.stats.CommitNanos.Add(int64(T3.Sub(T2)))
	if cp != nil {
		for k, v := range added {
			l.frontier[k] = v
		}
		l.edge = edge
		l.size = cp.Size
		l.pruneFrontier()
		l.latest.Store(cp)
		l.stats.Events.Add(int64(len(evs)))
	}
	return nil
}

// begin starts the writer's transaction. SQLite may answer "busy" without
// waiting while the checkpointer truncates the WAL (SPEC §11's bounded
// disk): nothing has happened yet, so the writer tries again, for a few
// seconds at most.
func (l *Log) begin(ctx context.Context) (*sqlx.Tx, error) {
	deadline := time.Now().Add(5 * time.Second)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		tx, err := l.db.W.BeginTxx(ctx, nil)
		if err == nil {
			return tx, nil
		}
		if !store.IsBusy(err) || time.Now().After(deadline) {
			return nil, fmt.Errorf("audit: begin: %w", err)
		}
		time.Sleep(wait)
	}
}

// savepoints are the three statements around every unit, prepared once per
// batch rather than parsed for every unit.
type savepoints struct{ begin, rollback, release *sql.Stmt }

func prepareSavepoints(tx *sqlx.Tx) (*savepoints, error) {
	var sp savepoints
	var err error
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{{&sp.begin, `SAVEPOINT unit`}, {&sp.rollback, `ROLLBACK TO SAVEPOINT unit`}, {&sp.release, `RELEASE SAVEPOINT unit`}} {
		if *p.dst, err = tx.Prepare(p.q); err != nil {
			sp.close()
			return nil, fmt.Errorf("audit: prepare savepoints: %w", err)
		}
	}
	return &sp, nil
}

func (sp *savepoints) close() {
	for _, s := range []*sql.Stmt{sp.begin, sp.rollback, sp.release} {
		if s != nil {
			s.Close()
		}
	}
}

// call runs a unit's function, turning a panic into that unit's error.
func (l *Log) call(u *unit, tx *Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			l.logger.Error("audit: unit panicked", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("audit: unit panicked: %v", r)
		}
	}()
	return u.fn(tx)
}

// lockHead reads the log head inside the transaction, locking it on
// PostgreSQL (SQLite's BEGIN IMMEDIATE already holds the database lock), and
// reloads the right edge of the tree when another process appended since
// this one last wrote.
func (l *Log) lockHead(tx *sqlx.Tx) (int64, error) {
	q := `SELECT origin_no, size FROM audit_head WHERE id = 1`
	if l.db.Dialect == store.Postgres {
		q += ` FOR UPDATE`
	}
	var head struct {
		Origin int64 `db:"origin_no"`
		Size   int64 `db:"size"`
	}
	if err := tx.Get(&head, q); err != nil {
		return 0, fmt.Errorf("audit: read head: %w", err)
	}
	if head.Origin != l.cur.No {
		return 0, fmt.Errorf("%w: this process appends to origin %d, the log head is at origin %d", ErrOriginMoved, l.cur.No, head.Origin)
	}
	size := head.Size
	if size != l.size || l.frontier == nil || l.edge == nil {
		f, err := readFrontier(tx, l.db, l.cur.HashBase, size)
		if err != nil {
			return 0, err
		}
		e, err := readEdge(tx, l.db, l.cur, size)
		if err != nil {
			return 0, err
		}
		l.frontier, l.edge, l.size = f, e, size
	}
	return size, nil
}

// appendEvents computes the Merkle hashes of the batch's events, inserts
// events, hashes and the tiles they complete, moves the head and signs a
// checkpoint. It returns what the writer keeps in memory once committed.
func (l *Log) appendEvents(tx *sqlx.Tx, size int64, evs []pending) (*Checkpoint, map[int64]tlog.Hash, *tileEdge, error) {
	added := make(map[int64]tlog.Hash, 2*len(evs)+8)
	reader := &overlayReader{added: added, frontier: l.frontier, tx: tx, db: l.db, base: l.cur.HashBase}
	hashRows := make([]hashRow, 0, 2*len(evs)+8)
	salts := make([]byte, SaltSize*len(evs))
	if _, err := rand.Read(salts); err != nil {
		return nil, nil, nil, fmt.Errorf("audit: salts: %w", err)
	}
	edge := l.edge.clone()
	var tiles []tileRow
	for i := range evs {
		p := &evs[i]
		copy(p.salt[:], salts[i*SaltSize:])
		p.entry = EntryOf(p.salt[:], p.body)
		hs, err := tlog.StoredHashes(p.leaf, p.entry[:], reader)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("audit: hashes of %d: %w", p.leaf, err)
		}
		if full := edge.add(hs[0], p.entry); full {
			tiles = append(tiles, edge.rows(l.cur.No, p.leaf/TileWidth)...)
			edge.reset()
		}
		base := tlog.StoredHashIndex(0, p.leaf)
		for i, h := range hs {
			added[base+int64(i)] = h
			hashRows = append(hashRows, hashRow{id: l.cur.HashBase + base + int64(i), hash: h})
		}
	}
	newSize := size + int64(len(evs))
	root, err := tlog.TreeHash(newSize, reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("audit: tree hash: %w", err)
	}
	if err := insertEvents(tx, l.db, l.cur.Start, evs); err != nil {
		return nil, nil, nil, err
	}
	if err := insertHashes(tx, l.db, hashRows); err != nil {
		return nil, nil, nil, err
	}
	if err := insertTiles(tx, l.db, tiles); err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	cp, err := l.sign(newSize, root)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := moveHead(tx, l.db, l.cur, cp, now); err != nil {
		return nil, nil, nil, err
	}
	return cp, added, edge, nil
}

type hashRow struct {
	id   int64
	hash tlog.Hash
}

const rowsPerInsert = 256

// multiRow returns the text of an INSERT of n rows, built once per n and
// dialect so that the driver's statement cache finds it again.
func multiRow(cache *sync.Map, db *store.DB, head, row string, n int) string {
	key := struct {
		d store.Dialect
		n int
	}{db.Dialect, n}
	if q, ok := cache.Load(key); ok {
		return q.(string)
	}
	var q strings.Builder
	q.WriteString(head)
	for i := range n {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(row)
	}
	text := db.Rebind(q.String())
	cache.Store(key, text)
	return text
}

var eventInserts, hashInserts sync.Map

// moveHead moves the log head to cp and stores cp, inside the writer's
// transaction.
func moveHead(tx *sqlx.Tx, db *store.DB, o *Origin, cp *Checkpoint, now time.Time) error {
	if _, err := tx.Exec(db.Rebind(`UPDATE audit_head SET origin_no = ?, size = ?, root = ?, updated_at = ? WHERE id = 1`),
		o.No, cp.Size, cp.Root[:], now.UnixMilli()); err != nil {
		return fmt.Errorf("audit: move head: %w", err)
	}
	if _, err := tx.Exec(db.Rebind(`INSERT INTO audit_checkpoints (gsize, origin_no, size, note, created_at) VALUES (?, ?, ?, ?, ?)`),
		o.Start+cp.Size, o.No, cp.Size, cp.Note, now.UnixMilli()); err != nil {
		return fmt.Errorf("audit: store checkpoint: %w", err)
	}
	return nil
}

func insertEvents(tx *sqlx.Tx, db *store.DB, start int64, evs []pending) error {
	const cols = 11
	args := make([]any, 0, cols*min(len(evs), rowsPerInsert))
	for first := 0; first < len(evs); first += rowsPerInsert {
		chunk := evs[first:min(first+rowsPerInsert, len(evs))]
		q := multiRow(&eventInserts, db, `INSERT INTO audit_events (idx, body, salt, type, time, organisation_id, aidant_id, usager_id, mandate_id, service_id, demarches) VALUES `,
			`(?,?,?,?,?,?,?,?,?,?,?)`, len(chunk))
		args = args[:0]
		for i := range chunk {
			p := &chunk[i]
			e := p.ev
			var dem any
			if len(e.Demarches) > 0 {
				dem = demarchesColumn(e.Demarches)
			}
			args = append(args, start+p.leaf, p.body, p.salt[:], e.Type, e.Time.UnixMilli(),
				nullable(e.Organisation), nullable(e.Aidant), nullable(e.Usager), nullable(e.Mandate), nullable(e.Service), dem)
		}
		if _, err := tx.Exec(q, args...); err != nil {
			return fmt.Errorf("audit: insert events: %w", err)
		}
	}
	return nil
}

func insertHashes(tx *sqlx.Tx, db *store.DB, rows []hashRow) error {
	args := make([]any, 0, 2*min(len(rows), rowsPerInsert))
	for start := 0; start < len(rows); start += rowsPerInsert {
		chunk := rows[start:min(start+rowsPerInsert, len(rows))]
		q := multiRow(&hashInserts, db, `INSERT INTO audit_hashes (id, hash) VALUES `, `(?,?)`, len(chunk))
		args = args[:0]
		for _, r := range chunk {
			args = append(args, r.id, r.hash[:])
		}
		if _, err := tx.Exec(q, args...); err != nil {
			return fmt.Errorf("audit: insert hashes: %w", err)
		}
	}
	return nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
