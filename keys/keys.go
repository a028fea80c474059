// Package keys owns the instance's JOSE signing keys: the ES256 keys that
// sign mandates (SPEC §5.3) and the ES256 or RS256 keys that sign the ID and
// access tokens of the OpenID provider for public services (SPEC §7), their
// rotation (`aidants keys rotate`), and the JWKS that publishes them.
//
// Keys live in the signing_keys table, so that several servers and the
// command line share them. Their private parts are encrypted at rest with
// AES-256-GCM under a key derived from keys.encryption_secret; they never
// appear in clear in the database, in errors or in logs. A retired key signs
// nothing more but stays published as long as signatures it made may still
// be alive: 400 days for mandates, 2 days for tokens.
//
// The audit log's checkpoint key is not one of these keys: it belongs to
// package audit and is never rotated here.
package keys

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/store"
)

// Use is what a key signs.
type Use string

// The uses of signing keys.
const (
	UseMandate Use = "mandate" // mandates live up to 365 days (+ renewal): a retired mandate key stays published 400 days
	UseToken   Use = "token"   // ID tokens and access tokens live minutes: a retired token key stays published 2 days
)

// publication is how long a retired key of each use stays in the JWKS: longer
// than anything it signed may live.
var publication = map[Use]time.Duration{
	UseMandate: 400 * 24 * time.Hour,
	UseToken:   2 * 24 * time.Hour,
}

const (
	// defaultRefresh bounds how stale this process's view of the table may
	// be when another process (the command line, another server) rotates.
	defaultRefresh = 30 * time.Second
	// lookupRefresh bounds how often an unknown kid may force a re-read:
	// a kid minted by another process a moment ago is found at once, and a
	// stream of made-up kids costs at most one query a second.
	lookupRefresh = time.Second
)

// system is the actor of the keys this package creates on its own.
var system = audit.Actor{Kind: audit.ActorSystem, ID: "keys"}

// defaults are the keys that must always have a current version.
var defaults = []slot{{UseMandate, jose.ES256}, {UseToken, jose.ES256}}

// slot is a (use, algorithm) pair: at most one current key each.
type slot struct {
	use Use
	alg jose.SignatureAlgorithm
}

func (s slot) String() string { return string(s.use) + "/" + string(s.alg) }

// Manager hands out the current signing keys and the published public keys.
// It is safe for concurrent use. It caches the table in memory and re-reads
// it when the cache is older than its refresh interval, so that a rotation
// made by another process is followed; its own rotations are seen at once.
type Manager struct {
	log     *audit.Log
	aead    cipher.AEAD
	now     func() time.Time
	refresh time.Duration

	snap   atomic.Pointer[snapshot]
	loadMu sync.Mutex // one reload at a time
	genMu  sync.Mutex // one generation or rotation at a time in this process
}

// options are the knobs tests turn (see export_test.go).
type options struct {
	now     func() time.Time
	refresh time.Duration
}

// Open loads the keys and makes sure there is a current ES256 key for each
// use, generating and storing one (with a keys.rotated event, reason
// "initial", actor system "keys") when none exists. secret is the decoded
// keys.encryption_secret, at least 32 bytes. A key that cannot be decrypted
// with it is an error naming its kid.
func Open(ctx context.Context, log *audit.Log, secret []byte) (*Manager, error) {
	return open(ctx, log, secret, options{})
}

func open(ctx context.Context, log *audit.Log, secret []byte, o options) (*Manager, error) {
	aead, err := newAEAD(secret)
	if err != nil {
		return nil, err
	}
	if o.now == nil {
		// The log's clock: the times of key rows and of their events agree.
		o.now = log.Now
	}
	if o.refresh <= 0 {
		o.refresh = defaultRefresh
	}
	m := &Manager{log: log, aead: aead, now: o.now, refresh: o.refresh}
	if _, err := m.reload(ctx); err != nil {
		return nil, err
	}
	if err := m.ensure(ctx, defaults); err != nil {
		return nil, err
	}
	return m, nil
}

// check refuses what this package does not sign with.
func check(use Use, alg jose.SignatureAlgorithm) error {
	switch use {
	case UseMandate:
		if alg != jose.ES256 {
			return fmt.Errorf("keys: %s keys are ES256 only, not %q", use, alg)
		}
	case UseToken:
		if alg != jose.ES256 && alg != jose.RS256 {
			return fmt.Errorf("keys: %s keys are ES256 or RS256, not %q", use, alg)
		}
	default:
		return fmt.Errorf("keys: unknown use %q", use)
	}
	return nil
}

// Signing returns the current private key for use and alg (jose.ES256, or
// jose.RS256 for UseToken only) as a JSONWebKey with KeyID, Algorithm and
// Use ("sig") set. The RS256 token key is generated and stored on its first
// request. The key must not be logged or stored.
func (m *Manager) Signing(ctx context.Context, use Use, alg jose.SignatureAlgorithm) (jose.JSONWebKey, error) {
	if err := check(use, alg); err != nil {
		return jose.JSONWebKey{}, err
	}
	s, err := m.fresh(ctx)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	if k := s.current(slot{use, alg}); k != nil {
		return k.signing(), nil
	}
	if err := m.ensure(ctx, []slot{{use, alg}}); err != nil {
		return jose.JSONWebKey{}, err
	}
	if s, err = m.fresh(ctx); err != nil {
		return jose.JSONWebKey{}, err
	}
	if k := s.current(slot{use, alg}); k != nil {
		return k.signing(), nil
	}
	return jose.JSONWebKey{}, fmt.Errorf("keys: no current %s key after generating one", slot{use, alg})
}

// Signer returns a signer with the current key for use and alg whose
// protected header carries the kid and, when typ is not empty, typ.
func (m *Manager) Signer(ctx context.Context, use Use, alg jose.SignatureAlgorithm, typ string) (jose.Signer, error) {
	jwk, err := m.Signing(ctx, use, alg)
	if err != nil {
		return nil, err
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jwk}, opts)
	if err != nil {
		return nil, fmt.Errorf("keys: signer for %s (kid %s): %w", slot{use, alg}, jwk.KeyID, err)
	}
	return signer, nil
}

// JWKS returns the public keys of every key not yet past its publication
// end: the current keys first, then the retired ones, newest first.
func (m *Manager) JWKS(ctx context.Context) (jose.JSONWebKeySet, error) {
	s, err := m.fresh(ctx)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	now := m.now()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(s.keys))}
	for _, k := range s.keys {
		if k.published(now) {
			set.Keys = append(set.Keys, k.public)
		}
	}
	return set, nil
}

// Public returns the public key with this kid if it is published: current,
// or retired and not yet past its publication end.
func (m *Manager) Public(ctx context.Context, kid string) (jose.JSONWebKey, bool, error) {
	s, err := m.fresh(ctx)
	if err != nil {
		return jose.JSONWebKey{}, false, err
	}
	k := s.byKid(kid)
	if k == nil && time.Since(s.loaded) >= lookupRefresh {
		// Perhaps minted by another process since the last read.
		if s, err = m.reloadIfSame(ctx, s); err != nil {
			return jose.JSONWebKey{}, false, err
		}
		k = s.byKid(kid)
	}
	if k == nil || !k.published(m.now()) {
		return jose.JSONWebKey{}, false, nil
	}
	return k.public, true, nil
}

// Rotate retires every current key (it stops signing and stays published
// until its use's publication end) and creates a new current key for each
// (use, alg) that had one, in one transaction with a keys.rotated event by
// actor whose detail lists the new and retired kids. It returns the new
// kids. The audit log's checkpoint key is not affected.
func (m *Manager) Rotate(ctx context.Context, actor audit.Actor) (newKids []string, err error) {
	m.genMu.Lock()
	defer m.genMu.Unlock()
	// The keys are generated before the unit (an RSA key takes a while and
	// the unit runs on the writer that every request waits for); if another
	// process changed the set of current keys in between, plan again.
	for range 3 {
		s, err := m.reload(ctx)
		if err != nil {
			return nil, err
		}
		plan := slices.Clone(defaults)
		for _, k := range s.keys {
			if k.current() && !slices.Contains(plan, k.slot) {
				plan = append(plan, k.slot)
			}
		}
		fresh, err := m.generateAll(plan)
		if err != nil {
			return nil, err
		}
		newKids, err = m.rotateUnit(ctx, actor, plan, fresh)
		if errors.Is(err, errReplan) {
			continue
		}
		if err != nil {
			return nil, err
		}
		// Committed: should this read fail, the next call reads again.
		m.afterWrite(ctx)
		return newKids, nil
	}
	return nil, errors.New("keys: rotate: the current keys kept changing under another process")
}

var errReplan = errors.New("keys: current keys changed during rotation")

func (m *Manager) rotateUnit(ctx context.Context, actor audit.Actor, plan []slot, fresh []*generated) ([]string, error) {
	var newKids []string
	err := m.log.Write(ctx, func(tx *audit.Tx) error {
		newKids = nil
		if err := lock(tx); err != nil {
			return err
		}
		var cur []row
		if err := tx.Select(&cur, `SELECT kid, use, alg FROM signing_keys WHERE retired_at IS NULL ORDER BY use, alg`); err != nil {
			return fmt.Errorf("keys: rotate: read current keys: %w", err)
		}
		for _, r := range cur {
			if !slices.Contains(plan, slot{Use(r.Use), jose.SignatureAlgorithm(r.Alg)}) {
				return errReplan
			}
		}
		now := m.now()
		retired := make([]string, 0, len(cur))
		for _, r := range cur {
			until := now.Add(publication[Use(r.Use)])
			if _, err := tx.Exec(`UPDATE signing_keys SET retired_at = ?, published_until = ? WHERE kid = ? AND retired_at IS NULL`,
				store.T(now), store.T(until), r.Kid); err != nil {
				return fmt.Errorf("keys: rotate: retire %s: %w", r.Kid, err)
			}
			retired = append(retired, r.Kid)
		}
		for _, g := range fresh {
			if err := insert(tx, g, now); err != nil {
				return err
			}
			newKids = append(newKids, g.kid)
		}
		_, err := tx.Append(audit.Event{Type: audit.KeysRotated, Actor: actor,
			Detail: map[string]any{"new": newKids, "retired": retired}})
		return err
	})
	if err != nil {
		if errors.Is(err, errReplan) {
			return nil, err
		}
		return nil, fmt.Errorf("keys: rotate: %w", err)
	}
	return newKids, nil
}

// ensure makes sure each slot has a current key, generating the missing
// ones outside the writer and storing them in one unit that checks again,
// under a lock, that no other process stored one meanwhile.
func (m *Manager) ensure(ctx context.Context, slots []slot) error {
	m.genMu.Lock()
	defer m.genMu.Unlock()
	s, err := m.reload(ctx)
	if err != nil {
		return err
	}
	var missing []slot
	for _, sl := range slots {
		if s.current(sl) == nil {
			missing = append(missing, sl)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fresh, err := m.generateAll(missing)
	if err != nil {
		return err
	}
	err = m.log.Write(ctx, func(tx *audit.Tx) error {
		if err := lock(tx); err != nil {
			return err
		}
		now := m.now()
		var added []string
		for _, g := range fresh {
			var n int
			if err := tx.Get(&n, `SELECT COUNT(*) FROM signing_keys WHERE use = ? AND alg = ? AND retired_at IS NULL`,
				string(g.use), string(g.alg)); err != nil {
				return fmt.Errorf("keys: check current %s key: %w", g.slot, err)
			}
			if n > 0 {
				continue // another process was first
			}
			if err := insert(tx, g, now); err != nil {
				return err
			}
			added = append(added, g.kid)
		}
		if len(added) == 0 {
			return nil
		}
		_, err := tx.Append(audit.Event{Type: audit.KeysRotated, Actor: system,
			Detail: map[string]any{"reason": "initial", "new": added}})
		return err
	})
	if err != nil {
		return fmt.Errorf("keys: create initial keys: %w", err)
	}
	return m.afterWrite(ctx)
}

// lock serialises key creation between processes. SQLite's writer
// transaction is BEGIN IMMEDIATE, which already excludes every other
// writer; PostgreSQL needs a lock held until the commit.
func lock(tx *audit.Tx) error {
	if tx.Dialect() != store.Postgres {
		return nil
	}
	if _, err := tx.Exec(`SELECT pg_advisory_xact_lock(7242630003)`); err != nil {
		return fmt.Errorf("keys: lock: %w", err)
	}
	return nil
}

func (m *Manager) generateAll(slots []slot) ([]*generated, error) {
	out := make([]*generated, 0, len(slots))
	for _, sl := range slots {
		g, err := m.generate(sl)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}
