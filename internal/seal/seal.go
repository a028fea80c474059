// Package seal keeps a pending exchange in the browser instead of the
// database: a value encrypted and authenticated under a key of the
// instance, named (the name is authenticated with it) and expiring.
//
// A sign-in that leaves for an identity provider, a service's
// authorization request waiting for the aidant's choice: neither is worth
// a durable write while nobody has authenticated (SPEC §11, issue 13), and
// several instances sharing one PostgreSQL database must all read them, so
// they cannot live in one process's memory either. The browser carries
// them sealed (gorilla/securecookie: AES-CTR then HMAC-SHA256 over the
// name, a timestamp and the value); the authenticated step that consumes
// one records it as spent, which makes it single-use.
package seal

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/securecookie"
)

// ErrInvalid is a sealed value that was forged, altered, sealed under
// another name or key, or has expired.
var ErrInvalid = errors.New("seal: invalid or expired value")

// Sealer seals values of one purpose.
type Sealer struct {
	sc  *securecookie.SecureCookie
	ttl time.Duration
}

// New returns a sealer whose keys are derived from secret (at least 32
// bytes) and purpose, a label no other sealer uses; values expire after
// ttl.
func New(secret []byte, purpose string, ttl time.Duration) (*Sealer, error) {
	if len(secret) < 32 {
		return nil, errors.New("seal: the secret must have at least 32 bytes")
	}
	hashKey, err := hkdf.Key(sha256.New, secret, nil, "aidants seal hash v1: "+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	blockKey, err := hkdf.Key(sha256.New, secret, nil, "aidants seal block v1: "+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	sc := securecookie.New(hashKey, blockKey).SetSerializer(securecookie.JSONEncoder{}).MaxLength(8192)
	// The timestamp securecookie checks is whole seconds: a second of
	// margin, and callers check their own expiry on their own clock.
	sc.MaxAge(int(ttl.Seconds()) + 1)
	return &Sealer{sc: sc, ttl: ttl}, nil
}

// TTL is how long a sealed value lives.
func (s *Sealer) TTL() time.Duration { return s.ttl }

// Seal returns v (JSON-encoded) sealed under name, URL- and cookie-safe.
func (s *Sealer) Seal(name string, v any) (string, error) {
	out, err := s.sc.Encode(name, v)
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	return out, nil
}

// Open decodes into v a value sealed under name; any failure is
// ErrInvalid.
func (s *Sealer) Open(name, sealed string, v any) error {
	if sealed == "" || len(sealed) > 8192 {
		return ErrInvalid
	}
	if err := s.sc.Decode(name, sealed, v); err != nil {
		return ErrInvalid
	}
	return nil
}
