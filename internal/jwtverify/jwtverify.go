// Package jwtverify is the one place where the service reads a signed JWT
// it did not just make: access tokens, client assertions, ID token hints,
// signed mandates, consent evidence. It is built on go-jose v4's jwt
// package, which accepts the compact serialisation only (never the JSON
// one, never a JWE), with the algorithms its caller allows and nothing
// else — never "none", never HS* —, a size bound, a clock leeway, and the
// registered claims checked: exp, nbf, iat, iss, aud.
package jwtverify

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MaxSize bounds a token: nothing the service reads is larger, and a
// million-dot token is refused before it is split.
const MaxSize = 64 << 10

// Leeway is the clock skew to tolerate on exp, nbf and iat of a token
// another party signed with its own clock (Expect.Leeway); the service's
// own tokens are checked against the clock that signed them, with none.
const Leeway = 30 * time.Second

// The ways a token is refused. Each error of Parse and Verify wraps one.
var (
	ErrMalformed = errors.New("jwt: not a signed JWT in compact form")
	ErrAlgorithm = errors.New("jwt: signature algorithm not accepted")
	ErrType      = errors.New("jwt: wrong type (typ)")
	ErrSignature = errors.New("jwt: the signature does not verify")
	ErrExpired   = errors.New("jwt: expired")
	ErrNotYet    = errors.New("jwt: not valid yet (nbf or iat in the future)")
	ErrIssuer    = errors.New("jwt: wrong issuer")
	ErrAudience  = errors.New("jwt: wrong audience")
)

// Token is a parsed signed JWT whose signature and claims are not checked
// yet. Its header fields may be read to find the key.
type Token struct {
	jwt *jwt.JSONWebToken
	// KeyID, Type and Algorithm are the protected header's kid, typ and alg.
	KeyID, Type, Algorithm string
}

// Parse reads a compact JWS signed with one of algs.
func Parse(raw string, algs ...jose.SignatureAlgorithm) (*Token, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" || len(raw) > MaxSize || strings.Count(raw, ".") != 2 {
		return nil, ErrMalformed
	}
	t, err := jwt.ParseSigned(raw, algs)
	if err != nil {
		if strings.Contains(err.Error(), "algorithm") {
			return nil, fmt.Errorf("%w: %v", ErrAlgorithm, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(t.Headers) != 1 {
		return nil, ErrMalformed
	}
	h := t.Headers[0]
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	return &Token{jwt: t, KeyID: h.KeyID, Type: typ, Algorithm: h.Algorithm}, nil
}

// Expect is what Verify requires of a token.
type Expect struct {
	// Type is the typ header required ("": any).
	Type string
	// Issuer is the iss required ("": any).
	Issuer string
	// Audience lists the audiences of which the token's aud must hold one
	// (none: any).
	Audience []string
	// Now is the time to check exp, nbf and iat against (zero: now).
	Now time.Time
	// AllowExpired accepts an expired token, or one without exp (an ID
	// token hint at logout, a mandate whose expiry is reported): exp is
	// then the caller's to read.
	AllowExpired bool
	// Leeway is the clock skew tolerated (Leeway for another party's
	// tokens, zero for the service's own).
	Leeway time.Duration
}

// Verify checks the signature with key, then the claims as e says, and
// decodes the payload into extra (structs or maps) as well.
func (t *Token) Verify(key any, e Expect, extra ...any) (*jwt.Claims, error) {
	if e.Type != "" && t.Type != e.Type {
		return nil, fmt.Errorf("%w: %q, want %q", ErrType, t.Type, e.Type)
	}
	var c jwt.Claims
	if err := t.jwt.Claims(key, append([]any{&c}, extra...)...); err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) || errors.Is(err, jose.ErrUnsupportedKeyType) {
			return nil, fmt.Errorf("%w: %v", ErrSignature, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	now := e.Now
	if now.IsZero() {
		now = time.Now()
	}
	check := c
	if e.AllowExpired {
		check.Expiry = nil
	} else if c.Expiry == nil {
		return nil, fmt.Errorf("%w: no exp", ErrExpired)
	}
	err := check.ValidateWithLeeway(jwt.Expected{Issuer: e.Issuer, AnyAudience: e.Audience, Time: now}, e.Leeway)
	switch {
	case err == nil:
		return &c, nil
	case errors.Is(err, jwt.ErrExpired):
		return nil, ErrExpired
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, ErrNotYet
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return nil, ErrIssuer
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, ErrAudience
	}
	return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
}

// VerifySet is Verify with the first key of set that verifies the
// signature (among those of the token's kid, when it names one), and
// returns that key.
func (t *Token) VerifySet(set *jose.JSONWebKeySet, e Expect, extra ...any) (*jwt.Claims, *jose.JSONWebKey, error) {
	k, err := t.SigningKey(set)
	if err != nil {
		return nil, nil, err
	}
	c, err := t.Verify(k.Key, e, extra...)
	return c, k, err
}

// SigningKey returns the key of set whose signature the token carries,
// checking the signature only (the claims are the caller's: an ID token
// already verified elsewhere, kept as evidence).
func (t *Token) SigningKey(set *jose.JSONWebKeySet) (*jose.JSONWebKey, error) {
	if set == nil {
		return nil, ErrSignature
	}
	for i := range set.Keys {
		k := set.Keys[i]
		if t.KeyID != "" && k.KeyID != "" && k.KeyID != t.KeyID {
			continue
		}
		pub := k.Public()
		if t.jwt.Claims(pub.Key) == nil {
			return &pub, nil
		}
	}
	return nil, ErrSignature
}

// UnsafeClaims decodes the payload without checking anything: only to
// find whose key to check the token with (a client assertion's iss).
func (t *Token) UnsafeClaims(dest ...any) error {
	if err := t.jwt.UnsafeClaimsWithoutVerification(dest...); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}
