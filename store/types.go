package store

import (
	"crypto/sha256"
	"database/sql/driver"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// Time is a UTC instant stored as milliseconds since the epoch (BIGINT on
// both engines), so comparisons in SQL are plain integer comparisons and
// both drivers agree. The zero Time is stored as NULL and NULL scans as the
// zero Time.
type Time struct{ time.Time }

// T wraps t, truncated to the millisecond as stored.
func T(t time.Time) Time {
	if t.IsZero() {
		return Time{}
	}
	return Time{t.UTC().Truncate(time.Millisecond)}
}

// Value implements driver.Valuer.
func (t Time) Value() (driver.Value, error) {
	if t.IsZero() {
		return nil, nil
	}
	return t.UnixMilli(), nil
}

// Scan implements sql.Scanner.
func (t *Time) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*t = Time{}
	case int64:
		*t = Time{time.UnixMilli(v).UTC()}
	case int32:
		*t = Time{time.UnixMilli(int64(v)).UTC()}
	default:
		return fmt.Errorf("store: cannot scan %T into Time", src)
	}
	return nil
}

// Millis is the stored form of t, for building query arguments.
func Millis(t time.Time) int64 { return t.UTC().UnixMilli() }

// List is a set of short codes stored as one comma-separated TEXT column
// (allowed démarches of an organisation, for example).
type List []string

// Value implements driver.Valuer.
func (l List) Value() (driver.Value, error) { return strings.Join(l, ","), nil }

// Scan implements sql.Scanner.
func (l *List) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case nil:
	case string:
		s = v
	case []byte:
		s = string(v)
	default:
		return fmt.Errorf("store: cannot scan %T into List", src)
	}
	if s == "" {
		*l = nil
		return nil
	}
	*l = strings.Split(s, ",")
	return nil
}

// Hash returns the base64url SHA-256 of a secret handed to a browser or a
// client: the database keeps only this, so a copy of it opens nothing.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return b64url(sum[:])
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
