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
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

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
}

// Options tunes Open.
type Options struct {
	// MaxOpenConns bounds the readers' pool (default 8).
	MaxOpenConns int
	// Synchronous overrides SQLite's synchronous pragma (default FULL);
	// benchmarks use NORMAL for the CPU ceiling.
	Synchronous string
}

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
	sync := opts.Synchronous
	if sync == "" {
		sync = "FULL"
	}
	base := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_journal_mode=WAL&_foreign_keys=on&_busy_timeout=15000&_synchronous=" + sync
	w, err := sqlx.Open("sqlite3", base+"&_txlock=immediate&_cache_size=-16000")
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
	r, err := sqlx.Open("sqlite3", base+"&_query_only=true")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(opts.MaxOpenConns)
	r.SetMaxIdleConns(opts.MaxOpenConns)
	r.SetConnMaxIdleTime(0)
	return &DB{R: r, W: w, Dialect: SQLite, Path: path}, nil
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

// NotFound maps sql.ErrNoRows to ErrNotFound, wrapped with what was sought.
func NotFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a random 128-bit identifier with a short prefix naming its
// kind ("org_…", "aid_…"). Ids carry no meaning and no personal data, so
// they may appear in the audit log and in URLs.
func NewID(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

// RandomToken returns n random bytes in unpadded base64url, for secrets
// handed to browsers (state, nonce, session ids, consent links).
func RandomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return b64url(b)
}
