package jwtverify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"aidants/internal/jwtverify"
)

func sign(t *testing.T, key any, alg jose.SignatureAlgorithm, typ, kid string, claims ...any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := jwt.Signed(s)
	for _, c := range claims {
		b = b.Claims(c)
	}
	raw, err := b.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestVerifyRefusesEachForgery(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Unix(1_800_000_000, 0)
	good := jwt.Claims{Issuer: "https://aidants.test", Audience: jwt.Audience{"svc"}, Expiry: jwt.NewNumericDate(now.Add(time.Minute)),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now)}
	with := func(f func(c *jwt.Claims)) jwt.Claims { c := good; f(&c); return c }
	expect := jwtverify.Expect{Type: "at+jwt", Issuer: "https://aidants.test", Audience: []string{"svc"}, Now: now, Leeway: jwtverify.Leeway}
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	unsigned := func(header string) string {
		payload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://aidants.test","aud":"svc","exp":1800000060}`))
		return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + payload + "."
	}
	cases := []struct {
		name string
		raw  string
		key  any
		want error
	}{
		{"genuine", sign(t, key, jose.ES256, "at+jwt", "k1", good), &key.PublicKey, nil},
		{"alg none", unsigned(`{"alg":"none","typ":"at+jwt"}`), &key.PublicKey, jwtverify.ErrAlgorithm},
		{"HS256 keyed with the public key", sign(t, pubDER, jose.HS256, "at+jwt", "k1", good), &key.PublicKey, jwtverify.ErrAlgorithm},
		{"the right kid, another key", sign(t, other, jose.ES256, "at+jwt", "k1", good), &key.PublicKey, jwtverify.ErrSignature},
		{"another type", sign(t, key, jose.ES256, "JWT", "k1", good), &key.PublicKey, jwtverify.ErrType},
		{"another issuer", sign(t, key, jose.ES256, "at+jwt", "", with(func(c *jwt.Claims) { c.Issuer = "https://evil.test" })), &key.PublicKey, jwtverify.ErrIssuer},
		{"another audience", sign(t, key, jose.ES256, "at+jwt", "", with(func(c *jwt.Claims) { c.Audience = jwt.Audience{"other"} })), &key.PublicKey, jwtverify.ErrAudience},
		{"expired", sign(t, key, jose.ES256, "at+jwt", "", with(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)) })), &key.PublicKey, jwtverify.ErrExpired},
		{"no exp", sign(t, key, jose.ES256, "at+jwt", "", with(func(c *jwt.Claims) { c.Expiry = nil })), &key.PublicKey, jwtverify.ErrExpired},
		{"issued in the future", sign(t, key, jose.ES256, "at+jwt", "", with(func(c *jwt.Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) })), &key.PublicKey, jwtverify.ErrNotYet},
		{"not valid yet", sign(t, key, jose.ES256, "at+jwt", "", with(func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })), &key.PublicKey, jwtverify.ErrNotYet},
		{"within the leeway", sign(t, key, jose.ES256, "at+jwt", "", with(func(c *jwt.Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(10 * time.Second)) })), &key.PublicKey, nil},
		{"beyond the leeway", sign(t, key, jose.ES256, "at+jwt", "", with(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-31 * time.Second)) })), &key.PublicKey, jwtverify.ErrExpired},
		{"a million dots", strings.Repeat(".", 1_000_000), &key.PublicKey, jwtverify.ErrMalformed},
		{"JSON serialisation", `{"payload":"e30","protected":"eyJhbGciOiJFUzI1NiJ9","signature":"AA"}`, &key.PublicKey, jwtverify.ErrMalformed},
		{"a compressed JWE", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00iLCJ6aXAiOiJERUYifQ.a.b.c.d", &key.PublicKey, jwtverify.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok, err := jwtverify.Parse(c.raw, jose.ES256)
			if err == nil {
				_, err = tok.Verify(c.key, expect)
			}
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestSigningKeyFindsTheKeyAmongASet(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k1.PublicKey, KeyID: "a"}, {Key: &k2.PublicKey, KeyID: "b"}}}
	raw := sign(t, k2, jose.ES256, "JWT", "b", jwt.Claims{Issuer: "x", Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))})
	tok, err := jwtverify.Parse(raw, jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tok.SigningKey(set)
	if err != nil || k.KeyID != "b" {
		t.Fatalf("signing key %v %v", k, err)
	}
	// A kid naming a key that does not verify is not saved by another.
	forged := sign(t, k2, jose.ES256, "JWT", "a", jwt.Claims{Issuer: "x"})
	tok, _ = jwtverify.Parse(forged, jose.ES256)
	if _, err := tok.SigningKey(set); !errors.Is(err, jwtverify.ErrSignature) {
		t.Fatalf("a kid of another key: %v", err)
	}
}
