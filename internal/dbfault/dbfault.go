// Package dbfault breaks a test database on purpose, to prove that an
// outage is answered as an error (a 500 or a 503) and never taken for a
// refusal, nor written in the journal as something that happened.
//
// Open gives a real, migrated database (SQLite or PostgreSQL, as package
// storetest does) seen through connections that fail on demand: the
// readers, the writer or both, every statement or only those containing
// some text. A second, untouched connection to the same database counts
// what was journaled.
package dbfault

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jmoiron/sqlx"

	"aidants/store"
	"aidants/store/storetest"
)

// ErrInjected is the failure of a statement this package breaks. It is a
// plain error, like a lost connection: nothing in the application knows
// it.
var ErrInjected = errors.New("dbfault: injected database failure")

// Pools name the connections a fault hits.
type Pools int

// The pools of a store.DB.
const (
	Readers Pools = 1 << iota // store.DB.R
	Writer                    // store.DB.W, the audit writer's
	Both    = Readers | Writer
)

// DB is a database whose connections fail on demand.
type DB struct {
	// DB is what the application under test opens its log on.
	*store.DB
	// Clean is another connection to the same database, never broken:
	// the test's witness of what was written.
	Clean *store.DB

	readers, writer fault
}

// fault is what one pool's statements fail on: nil for nothing, "" for
// every statement, else the statements containing the text.
type fault struct{ match atomic.Pointer[string] }

func (f *fault) check(query string) error {
	m := f.match.Load()
	if m == nil || !strings.Contains(query, *m) {
		return nil
	}
	return fmt.Errorf("%w (statement %.60q)", ErrInjected, query)
}

// Fail makes the statements of pools that contain text fail from now on
// ("" for every statement, and every new transaction and ping).
func (d *DB) Fail(pools Pools, text string) {
	if pools&Readers != 0 {
		d.readers.match.Store(&text)
	}
	if pools&Writer != 0 {
		d.writer.match.Store(&text)
	}
}

// Heal ends every fault.
func (d *DB) Heal() {
	d.readers.match.Store(nil)
	d.writer.match.Store(nil)
}

// Events counts the journal's events through the clean connection.
func (d *DB) Events(t testing.TB) int {
	t.Helper()
	var n int
	if err := d.Clean.R.Get(&n, `SELECT COUNT(*) FROM audit_events`); err != nil {
		t.Fatalf("dbfault: count events: %v", err)
	}
	return n
}

// EventTypes lists the types of the events after index from, in order,
// through the clean connection.
func (d *DB) EventTypes(t testing.TB, from int) []string {
	t.Helper()
	var out []string
	if err := d.Clean.R.Select(&out, d.Clean.Rebind(`SELECT type FROM audit_events WHERE idx >= ? ORDER BY idx`), from); err != nil {
		t.Fatalf("dbfault: list events: %v", err)
	}
	return out
}

// Open returns a fresh, migrated database of dialect d whose connections
// fail on demand, closed at the end of the test.
func Open(t testing.TB, d store.Dialect) *DB {
	t.Helper()
	ctx := context.Background()
	driverName, dsn := storetest.DSN(t, d)
	clean, err := store.Open(ctx, driverName, dsn, store.Options{MaxOpenConns: 2})
	if err != nil {
		t.Fatalf("dbfault: open %s: %v", d, err)
	}
	t.Cleanup(func() { clean.Close() })
	if _, err := clean.Migrate(ctx); err != nil {
		t.Fatalf("dbfault: migrate %s: %v", d, err)
	}
	out := &DB{Clean: clean}
	var r, w *sqlx.DB
	switch d {
	case store.SQLite:
		// The same settings as store.Open: the writer's driver (registered
		// by package store) sets WAL and the rest on each connection.
		base := "file:" + (&url.URL{Path: dsn}).EscapedPath() + "?_foreign_keys=on&_busy_timeout=15000&_mutex=no&_synchronous=FULL"
		w = pool(t, "sqlite3_aidants_writer", base+"&_txlock=immediate", "sqlite3", &out.writer)
		w.SetMaxOpenConns(1)
		r = pool(t, "sqlite3", base+"&_query_only=true", "sqlite3", &out.readers)
		r.SetMaxOpenConns(4)
	case store.Postgres:
		w = pool(t, "pgx", dsn, "pgx", &out.writer)
		w.SetMaxOpenConns(4)
		r = pool(t, "pgx", dsn, "pgx", &out.readers)
		r.SetMaxOpenConns(4)
	default:
		t.Fatalf("dbfault: unknown dialect %q", d)
	}
	out.DB = &store.DB{R: r, W: w, Dialect: d}
	if d == store.SQLite {
		out.DB.Path = dsn
	}
	return out
}

// pool opens a pool of driverName's connections to dsn that fail as f
// says; sqlxName tells sqlx the placeholders.
func pool(t testing.TB, driverName, dsn, sqlxName string, f *fault) *sqlx.DB {
	t.Helper()
	probe, err := sql.Open(driverName, "")
	if err != nil {
		t.Fatalf("dbfault: driver %s: %v", driverName, err)
	}
	drv := probe.Driver()
	probe.Close()
	var inner driver.Connector
	if dc, ok := drv.(driver.DriverContext); ok {
		if inner, err = dc.OpenConnector(dsn); err != nil {
			t.Fatalf("dbfault: connector %s: %v", driverName, err)
		}
	} else {
		inner = dsnConnector{drv, dsn}
	}
	db := sqlx.NewDb(sql.OpenDB(&connector{inner: inner, fault: f}), sqlxName)
	t.Cleanup(func() { db.Close() })
	return db
}

type dsnConnector struct {
	drv driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.drv }

type connector struct {
	inner driver.Connector
	fault *fault
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := c.fault.check(""); err != nil {
		return nil, err
	}
	inner, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: inner, fault: c.fault}, nil
}

func (c *connector) Driver() driver.Driver { return c.inner.Driver() }

// conn passes everything to the driver's connection, unless its fault
// says otherwise. Both drivers of the project implement the context
// interfaces; anything else falls back to database/sql's defaults.
type conn struct {
	driver.Conn
	fault *fault
}

var (
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
)

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if err := c.fault.check(query); err != nil {
		return nil, err
	}
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return q.QueryContext(ctx, query, args)
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if err := c.fault.check(query); err != nil {
		return nil, err
	}
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return e.ExecContext(ctx, query, args)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if err := c.fault.check(query); err != nil {
		return nil, err
	}
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Conn.Prepare(query)
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if err := c.fault.check(""); err != nil {
		return nil, err
	}
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	return c.Conn.Begin() //lint:ignore SA1019 the driver has nothing better
}

func (c *conn) Ping(ctx context.Context) error {
	if err := c.fault.check(""); err != nil {
		return err
	}
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := c.Conn.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}
