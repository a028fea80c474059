// Package store owns the database: opening SQLite or PostgreSQL with the
// right settings, the per-dialect migrations embedded in the binary, and the
// small types (times, ids) that make one set of sqlx queries work on both
// engines.
//
// Domain packages write their SQL once, with '?' placeholders, and run it
// through Rebind. Every write goes through the audit writer, which holds the
// only writing connection of the process (see package audit); readers use the
// pool returned by DB.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"
)

// Dialect names a database engine.
type Dialect string

// The supported engines.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// ErrNotFound is returned by lookups that find nothing.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a unique constraint refuses a row.
var ErrConflict = errors.New("already exists")

// DB is an open database: a pool of readers and the writing pool.
type DB struct {
	// R serves reads. On SQLite its connections are query-only.
	R *sqlx.DB
	// W is the writing pool: one connection on SQLite (BEGIN IMMEDIATE),
	// the shared pool on PostgreSQL. Only the audit writer and the
	// migrations use it.
	W       *sqlx.DB
	Dialect Dialect
	// Path is the SQLite file, empty on PostgreSQL.
	Path string

	stop, stopped chan struct{} // the SQLite checkpointer
	checkpointed  atomic.Int64  // Unix ms of the last complete checkpoint
	closing       sync.Once
}

// Options tunes Open.
type Options struct {
	// MaxOpenConns bounds the readers' pool (default 8).
	MaxOpenConns int
	// Synchronous overrides SQLite's synchronous pragma (default FULL);
	// benchmarks use NORMAL for the CPU ceiling.
	Synchronous string
	// NoCheckpointer leaves WAL checkpoints to another process (a server
	// beside the command line) and to the last connection's close.
	NoCheckpointer bool
	// WALLimit bounds the SQLite write-ahead log, in bytes (default 16
	// MB): past it, the checkpointer truncates it as soon as no reader
	// holds it back.
	WALLimit int64
}

// DefaultWALLimit is the WAL bound when none is given.
const DefaultWALLimit = 16 << 20

// Open connects to the database named by driver ("sqlite" or "postgres")
// and dsn (a file path for SQLite, a URL or key=value string for
// PostgreSQL). It does not migrate; call Migrate.
func Open(ctx context.Context, driver, dsn string, opts Options) (*DB, error) {
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = 8
	}
	switch Dialect(driver) {
	case SQLite:
		return openSQLite(ctx, dsn, opts)
	case Postgres:
		return openPostgres(ctx, dsn, opts)
	default:
		return nil, fmt.Errorf("store: unknown driver %q", driver)
	}
}

func openSQLite(ctx context.Context, path string, opts Options) (*DB, error) {
	if strings.HasPrefix(path, "file:") || strings.Contains(path, "?") {
		return nil, fmt.Errorf("store: sqlite dsn must be a plain file path, got %q", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	// The database holds personal data: only its owner reads it. SQLite
	// gives the WAL and shared-memory files the database file's mode.
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		if err := checkHeader(path); err != nil {
			return nil, err
		}
	}
	if opts.WALLimit <= 0 {
		opts.WALLimit = DefaultWALLimit
	}
	sync := opts.Synchronous
	if sync == "" {
		sync = "FULL"
	}
	base := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_foreign_keys=on&_busy_timeout=15000&_mutex=no&_synchronous=" + sync
	// A statement cache per connection: the writer runs the same few
	// statements thousands of times a second. The writer never checkpoints
	// the WAL itself (that would copy pages back into the database on its
	// own thread, in the middle of a commit): a background connection
	// does, on the other core.
	w, err := sqlx.Open(sqliteWriterDriver, base+"&_txlock=immediate&_cache_size=-16000&_stmt_cache_size=64")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	r, err := sqlx.Open("sqlite3", base+"&_query_only=true&_stmt_cache_size=64")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(opts.MaxOpenConns)
	r.SetMaxIdleConns(opts.MaxOpenConns)
	r.SetConnMaxIdleTime(0)
	db := &DB{R: r, W: w, Dialect: SQLite, Path: path}
	if opts.NoCheckpointer {
		return db, nil
	}
	db.stop, db.stopped = make(chan struct{}), make(chan struct{})
	// The checkpointer waits at most 2 s for readers: a TRUNCATE holds
	// the writer's lock while it waits, and the writer gives up after 5 s
	// (audit's begin). A checkpoint that cannot finish is tried again at
	// the next tick.
	ck, err := sql.Open("sqlite3", strings.Replace(base, "_busy_timeout=15000", "_busy_timeout=2000", 1))
	if err != nil {
		db.Close()
		return nil, err
	}
	ck.SetMaxOpenConns(1)
	go db.checkpointer(ck, opts.WALLimit)
	return db, nil
}

// Driver names: the writer's connections turn automatic checkpoints off.
const sqliteWriterDriver = "sqlite3_aidants_writer"

func init() {
	sql.Register(sqliteWriterDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec(`PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 8388608; PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 0`, nil)
		return err
	}})
}

// checkpointer copies the WAL back into the database file from its own
// connection, so that the writer only appends to the WAL. PASSIVE never
// blocks the writer or readers. Under a steady load the WAL is never
// restarted by itself (a reader always holds a snapshot in it), so once it
// passes limit the checkpointer truncates it (TRUNCATE waits for the
// readers of the old frames, and holds the writer for that moment only).
func (db *DB) checkpointer(ck *sql.DB, limit int64) {
	defer close(db.stopped)
	defer ck.Close()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	wal := db.Path + "-wal"
	db.checkpointed.Store(time.Now().UnixMilli())
	for {
		select {
		case <-db.stop:
			ck.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
			return
		case <-t.C:
			// A WAL a quarter of its bound is truncated (a full checkpoint
			// first), which leaves room for what the writer appends
			// meanwhile; otherwise a passive checkpoint keeps up.
			mode := "PASSIVE"
			if st, err := os.Stat(wal); err == nil && st.Size() > limit/4 {
				mode = "TRUNCATE"
			}
			var busy, frames, copied int64
			if err := ck.QueryRow(`PRAGMA wal_checkpoint(`+mode+`)`).Scan(&busy, &frames, &copied); err == nil && busy == 0 && copied >= frames {
				db.checkpointed.Store(time.Now().UnixMilli())
			}
		}
	}
}

// CheckpointAge is how long ago the checkpointer last copied the whole
// WAL back into the database file (SQLite; 0 for PostgreSQL, or when
// another process checkpoints). A growing age means a long reader holds
// the WAL, which then grows past its bound.
func (db *DB) CheckpointAge() time.Duration {
	last := db.checkpointed.Load()
	if last == 0 {
		return 0
	}
	return time.Since(time.UnixMilli(last))
}

// WALSize is the size of SQLite's write-ahead log in bytes (0 for
// PostgreSQL).
func (db *DB) WALSize() int64 {
	if db.Dialect != SQLite {
		return 0
	}
	st, err := os.Stat(db.Path + "-wal")
	if err != nil {
		return 0
	}
	return st.Size()
}

func openPostgres(ctx context.Context, dsn string, opts Options) (*DB, error) {
	db, err := sqlx.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	db.SetMaxOpenConns(opts.MaxOpenConns + 2)
	db.SetMaxIdleConns(opts.MaxOpenConns + 2)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open postgres: %w", redactDSN(err))
	}
	return &DB{R: db, W: db, Dialect: Postgres}, nil
}

// redactDSN keeps a password that pgx might echo out of error messages.
func redactDSN(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "password="); i >= 0 {
		return errors.New(msg[:i] + "password=…")
	}
	return err
}

// Close closes both pools.
func (db *DB) Close() error {
	if db.stop != nil {
		db.closing.Do(func() { close(db.stop) })
		<-db.stopped
	}
	err := db.R.Close()
	if db.W != db.R {
		err = errors.Join(err, db.W.Close())
	}
	return err
}

// Rebind turns '?' placeholders into the dialect's.
func (db *DB) Rebind(q string) string { return db.R.Rebind(q) }

// IsConflict tells whether err is a unique-constraint violation.
func IsConflict(err error) bool {
	if err == nil {
		return false
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
	}
	// pgx reports SQLSTATE 23505 for unique_violation.
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		return coded.SQLState() == "23505"
	}
	return false
}

// IsBusy tells whether err is SQLite's "database is locked" (busy).
func IsBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrBusy
}

// IsUnavailable tells whether err means the database cannot take writes
// for now — a full disk, a read-only or failing file, a lost connection,
// an engine shutting down — as opposed to a refusal of the statement: the
// caller answers 503 and tries again later.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrFull, sqlite3.ErrReadonly, sqlite3.ErrIoErr, sqlite3.ErrCantOpen, sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrNomem:
			return true
		}
		return false
	}
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		switch state := coded.SQLState(); {
		case strings.HasPrefix(state, "08"), strings.HasPrefix(state, "53"), strings.HasPrefix(state, "57P"), state == "25006":
			// connection exception, insufficient resources (disk full),
			// operator intervention, read-only transaction
			return true
		}
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)
}

// NotFound maps sql.ErrNoRows to ErrNotFound, wrapped with what was sought.
func NotFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}

// idEncoding is base32 with an alphabet in ASCII order, so that ids sort
// as their bytes do.
var idEncoding = base32.NewEncoding("234567abcdefghijklmnopqrstuvwxyz").WithPadding(base32.NoPadding)

// NewID returns a 128-bit identifier with a short prefix naming its kind
// ("org_…", "aid_…"): 48 bits of milliseconds then 80 random bits, so that
// new rows land at the end of their primary-key B-tree instead of on a
// random page (a random page per insert is what a commit pays for). Ids
// carry no personal data and are not secrets, so they may appear in the
// audit log and in URLs; they reveal when the object was created.
func NewID(prefix string) string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	rand.Read(b[6:])
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

// RandomToken returns n random bytes in unpadded base64url, for secrets
// handed to browsers (state, nonce, session ids, consent links).
func RandomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return b64url(b)
}

// ErrDamaged is returned by Check for a database whose pages are not what
// the engine wrote.
var ErrDamaged = errors.New("store: the database is damaged")

// Check runs the engine's own integrity check of every page: SQLite's
// quick_check (a full read of the file: seconds per gigabyte), nothing on
// PostgreSQL, which checks its pages as it reads them. It returns an error
// wrapping ErrDamaged that names the first problems found.
func (db *DB) Check(ctx context.Context) error {
	if db.Dialect != SQLite {
		return nil
	}
	if err := checkHeader(db.Path); err != nil {
		return err
	}
	rows, err := db.R.QueryContext(ctx, `PRAGMA quick_check(5)`)
	if err != nil {
		if isCorrupt(err) {
			return fmt.Errorf("%w: %v", ErrDamaged, err)
		}
		return fmt.Errorf("store: check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("store: check: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		if isCorrupt(err) {
			return fmt.Errorf("%w: %v", ErrDamaged, err)
		}
		return fmt.Errorf("store: check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrDamaged, strings.Join(problems, "; "))
	}
	return nil
}

// checkHeader reads the first 100 bytes of a SQLite file: the format
// string and a page size SQLite can have written.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("store: check: %w", err)
	}
	defer f.Close()
	var h [100]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return fmt.Errorf("%w: %s is not a SQLite database (%v)", ErrDamaged, path, err)
	}
	if string(h[:16]) != "SQLite format 3\x00" {
		return fmt.Errorf("%w: %s does not start as a SQLite database", ErrDamaged, path)
	}
	ps := int(h[16])<<8 | int(h[17])
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps&(ps-1) != 0 {
		return fmt.Errorf("%w: %s has an impossible page size", ErrDamaged, path)
	}
	return nil
}

// IsDamaged tells whether err says the database's pages are damaged.
func IsDamaged(err error) bool { return errors.Is(err, ErrDamaged) || isCorrupt(err) }

// isCorrupt tells whether err is SQLite's "database disk image is
// malformed" or "file is not a database".
func isCorrupt(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrCorrupt || se.Code == sqlite3.ErrNotADB)
}
