package devidp

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// pendingAuth is a checked authorization request waiting for the person to
// pick an identity.
type pendingAuth struct {
	clientID    string
	redirectURI string
	state       string
	nonce       string
	challenge   string // PKCE S256 code_challenge
	scopes      []string
	expires     time.Time
}

// authCode is an issued authorization code. It stays in the store after
// redemption, until it expires, so that a replay revokes the access token it
// produced (RFC 6749 §4.1.2).
type authCode struct {
	clientID    string
	redirectURI string
	sub         string
	nonce       string
	challenge   string
	scopes      []string
	authTime    time.Time
	expires     time.Time
	redeemed    bool
	replayed    bool
	accessToken string
}

// grant is what an access token gives access to.
type grant struct {
	clientID string
	sub      string
	scopes   []string
	expires  time.Time
}

var (
	errUnknownCode  = errors.New("devidp: unknown or expired code")
	errCodeReplayed = errors.New("devidp: code already used")
)

// store keeps the provider's short-lived state in memory. Every method
// prunes what has expired, so the maps stay small.
type store struct {
	mu      sync.Mutex
	pending map[string]*pendingAuth
	codes   map[string]*authCode
	tokens  map[string]grant
}

func newStore() store {
	return store{
		pending: make(map[string]*pendingAuth),
		codes:   make(map[string]*authCode),
		tokens:  make(map[string]grant),
	}
}

// prune drops expired entries. The caller holds s.mu.
func (s *store) prune(now time.Time) {
	for k, v := range s.pending {
		if !now.Before(v.expires) {
			delete(s.pending, k)
		}
	}
	for k, v := range s.codes {
		if !now.Before(v.expires) {
			delete(s.codes, k)
		}
	}
	for k, v := range s.tokens {
		if !now.Before(v.expires) {
			delete(s.tokens, k)
		}
	}
}

// addPending stores a request and returns its single-use id.
func (s *store) addPending(now time.Time, a pendingAuth) string {
	id := randomToken()
	a.expires = now.Add(pendingTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	s.pending[id] = &a
	return id
}

// takePending removes and returns the request with this id.
func (s *store) takePending(now time.Time, id string) (pendingAuth, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	a, ok := s.pending[id]
	if !ok {
		return pendingAuth{}, false
	}
	delete(s.pending, id)
	return *a, true
}

// addCode stores a code and returns its value.
func (s *store) addCode(now time.Time, c authCode) string {
	code := randomToken()
	c.expires = now.Add(codeTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	s.codes[code] = &c
	return code
}

// redeemCode marks a code used and returns it. A second redemption revokes
// the access token issued for the first one and fails.
func (s *store) redeemCode(now time.Time, code string) (authCode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	c, ok := s.codes[code]
	if !ok {
		return authCode{}, errUnknownCode
	}
	if c.redeemed {
		delete(s.tokens, c.accessToken)
		c.replayed = true
		return authCode{}, errCodeReplayed
	}
	c.redeemed = true
	return *c, nil
}

// issueToken stores a new access token for g, issued from code, and returns
// it. If the code was replayed in the meantime, the token is returned but
// already revoked.
func (s *store) issueToken(now time.Time, code string, g grant) string {
	tok := randomToken()
	g.expires = now.Add(accessTokenTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	c, ok := s.codes[code]
	if ok && c.replayed {
		return tok
	}
	if ok {
		c.accessToken = tok
	}
	s.tokens[tok] = g
	return tok
}

// lookupToken returns the grant of a live access token.
func (s *store) lookupToken(now time.Time, tok string) (grant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	g, ok := s.tokens[tok]
	return g, ok
}

// randomToken returns 256 random bits, base64url-encoded.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return base64.RawURLEncoding.EncodeToString(b)
}
