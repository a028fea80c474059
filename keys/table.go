package keys

import (
	"cmp"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/store"
)

// rsaBits is the size of generated RS256 keys.
const rsaBits = 3072

// row is one line of signing_keys.
type row struct {
	Kid            string     `db:"kid"`
	Use            string     `db:"use"`
	Alg            string     `db:"alg"`
	PublicJWK      string     `db:"public_jwk"`
	PrivateEnc     []byte     `db:"private_enc"`
	CreatedAt      store.Time `db:"created_at"`
	RetiredAt      store.Time `db:"retired_at"`
	PublishedUntil store.Time `db:"published_until"`
}

// key is a loaded key. private is set for current keys only: a retired
// key is never decrypted, since nothing signs with it any more.
type key struct {
	slot
	kid     string
	public  jose.JSONWebKey
	private crypto.Signer
	created time.Time
	retired time.Time
	until   time.Time // publication end; zero while current
}

func (k *key) current() bool { return k.retired.IsZero() }

func (k *key) published(now time.Time) bool { return k.until.IsZero() || now.Before(k.until) }

func (k *key) signing() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.private, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// snapshot is an immutable view of the table at one moment.
type snapshot struct {
	loaded time.Time // wall clock of the read; zero forces the next read
	keys   []*key    // current first, then retired, newest first
}

func (s *snapshot) current(sl slot) *key {
	for _, k := range s.keys {
		if k.current() && k.slot == sl {
			return k
		}
	}
	return nil
}

func (s *snapshot) byKid(kid string) *key {
	for _, k := range s.keys {
		if k.kid == kid {
			return k
		}
	}
	return nil
}

// fresh returns the cached view, read again when older than the refresh
// interval.
func (m *Manager) fresh(ctx context.Context) (*snapshot, error) {
	s := m.snap.Load()
	if s != nil && !s.loaded.IsZero() && time.Since(s.loaded) < m.refresh {
		return s, nil
	}
	return m.reloadIfSame(ctx, s)
}

// reloadIfSame reads the table unless another goroutine did since old was
// taken, so that a crowd of callers finding the cache stale costs one read.
func (m *Manager) reloadIfSame(ctx context.Context, old *snapshot) (*snapshot, error) {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	if cur := m.snap.Load(); cur != old && cur != nil && !cur.loaded.IsZero() {
		return cur, nil
	}
	return m.read(ctx)
}

// reload reads the table now.
func (m *Manager) reload(ctx context.Context) (*snapshot, error) {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	return m.read(ctx)
}

// afterWrite makes this process's own change visible at once. Should the
// read fail, the cache is marked stale so that the next call reads again.
func (m *Manager) afterWrite(ctx context.Context) error {
	_, err := m.reload(ctx)
	if err == nil {
		return nil
	}
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	if s := m.snap.Load(); s != nil {
		c := *s
		c.loaded = time.Time{}
		m.snap.Store(&c)
	}
	return err
}

// read loads every key not yet past its publication end. m.loadMu is held.
func (m *Manager) read(ctx context.Context) (*snapshot, error) {
	loaded := time.Now()
	db := m.log.DB()
	var rows []row
	if err := db.R.SelectContext(ctx, &rows, db.Rebind(`SELECT kid, use, alg, public_jwk, private_enc, created_at, retired_at, published_until
		FROM signing_keys WHERE published_until IS NULL OR published_until > ?`), store.Millis(m.now())); err != nil {
		return nil, fmt.Errorf("keys: read signing keys: %w", err)
	}
	prev := m.snap.Load()
	s := &snapshot{loaded: loaded, keys: make([]*key, 0, len(rows))}
	for _, r := range rows {
		k := &key{slot: slot{Use(r.Use), jose.SignatureAlgorithm(r.Alg)}, kid: r.Kid,
			created: r.CreatedAt.Time, retired: r.RetiredAt.Time, until: r.PublishedUntil.Time}
		if err := json.Unmarshal([]byte(r.PublicJWK), &k.public); err != nil {
			return nil, fmt.Errorf("keys: key %s: public key: %w", r.Kid, err)
		}
		if k.public.KeyID != r.Kid || !k.public.IsPublic() || !k.public.Valid() {
			return nil, fmt.Errorf("keys: key %s: the stored public key is not a public key with this kid", r.Kid)
		}
		if k.current() {
			if p := prev.byKidOrNil(r.Kid); p != nil && p.private != nil {
				k.private = p.private
			} else {
				priv, err := m.unseal(k, r.PrivateEnc)
				if err != nil {
					return nil, err
				}
				k.private = priv
			}
		}
		s.keys = append(s.keys, k)
	}
	slices.SortFunc(s.keys, func(a, b *key) int {
		if a.current() != b.current() {
			if a.current() {
				return -1
			}
			return 1
		}
		if a.current() {
			return cmp.Or(cmp.Compare(a.use, b.use), cmp.Compare(a.alg, b.alg))
		}
		return cmp.Or(b.retired.Compare(a.retired), b.created.Compare(a.created), cmp.Compare(a.kid, b.kid))
	})
	m.snap.Store(s)
	return s, nil
}

func (s *snapshot) byKidOrNil(kid string) *key {
	if s == nil {
		return nil
	}
	return s.byKid(kid)
}

// generated is a new key ready to insert: public part and sealed private part.
type generated struct {
	slot
	kid    string
	public string
	sealed []byte
}

func (m *Manager) generate(sl slot) (*generated, error) {
	var priv crypto.Signer
	var err error
	switch sl.alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, rsaBits)
	default:
		err = fmt.Errorf("unsupported algorithm %q", sl.alg)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: generate %s key: %w", sl, err)
	}
	kid := newKid()
	pub, err := json.Marshal(jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: string(sl.alg), Use: "sig"})
	if err != nil {
		return nil, fmt.Errorf("keys: generate %s key: public key: %w", sl, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("keys: generate %s key: encode: %w", sl, err)
	}
	defer clear(der)
	return &generated{slot: sl, kid: kid, public: string(pub), sealed: m.seal(kid, der)}, nil
}

// newKid returns 96 random bits in base64url: unique, URL-safe, and telling
// nothing about the key.
func newKid() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func insert(tx *audit.Tx, g *generated, now time.Time) error {
	if _, err := tx.Exec(`INSERT INTO signing_keys (kid, use, alg, public_jwk, private_enc, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		g.kid, string(g.use), string(g.alg), g.public, g.sealed, store.T(now)); err != nil {
		return fmt.Errorf("keys: store %s key %s: %w", g.slot, g.kid, err)
	}
	return nil
}

// Private parts are sealed as: a version byte, then AES-256-GCM with a
// random nonce (nonce ‖ ciphertext ‖ tag) of the PKCS #8 DER key, with the
// kid as additional data so that a sealed key moved to another row does
// not open.
const (
	sealVersion = 1
	hkdfInfo    = "aidants signing keys v1"
	minSecret   = 32
)

func newAEAD(secret []byte) (cipher.AEAD, error) {
	if len(secret) < minSecret {
		return nil, fmt.Errorf("keys: the encryption secret has %d bytes, at least %d are required", len(secret), minSecret)
	}
	k, err := hkdf.Key(sha256.New, secret, nil, hkdfInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("keys: derive encryption key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("keys: encryption key: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("keys: encryption key: %w", err)
	}
	return aead, nil
}

func (m *Manager) seal(kid string, der []byte) []byte {
	return m.aead.Seal([]byte{sealVersion}, nil, der, []byte(kid))
}

var errUnseal = errors.New("it cannot be decrypted: keys.encryption_secret is not the one it was stored with, or the row was altered")

// unseal opens the private part of k and checks that it is the private half
// of the published key, of the right kind for its algorithm.
func (m *Manager) unseal(k *key, sealed []byte) (crypto.Signer, error) {
	if len(sealed) < 1 || sealed[0] != sealVersion {
		return nil, fmt.Errorf("keys: key %s: unknown private key format", k.kid)
	}
	der, err := m.aead.Open(nil, nil, sealed[1:], []byte(k.kid))
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: %w", k.kid, errUnseal)
	}
	defer clear(der)
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: private key does not parse", k.kid)
	}
	var ok bool
	switch priv := parsed.(type) {
	case *ecdsa.PrivateKey:
		ok = k.alg == jose.ES256 && priv.Curve == elliptic.P256()
	case *rsa.PrivateKey:
		ok = k.alg == jose.RS256 && priv.N.BitLen() >= 2048
	}
	if !ok {
		return nil, fmt.Errorf("keys: key %s: private key does not fit %s", k.kid, k.alg)
	}
	priv := parsed.(crypto.Signer)
	pub, isEq := priv.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !isEq || !pub.Equal(k.public.Key) {
		return nil, fmt.Errorf("keys: key %s: private key does not match the published key", k.kid)
	}
	return priv, nil
}
