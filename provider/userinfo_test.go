package provider_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/keys"
)

func TestUserinfoTakesOnlyAValidBearerToken(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		id, at := e.tokens(e.code(e.jwt))
		if r := e.userinfo(at, nil); r.status != http.StatusOK {
			t.Fatalf("userinfo with the access token in the header: %d %v", r.status, r.body)
		}
		if r := e.userinfo(at, func(r *http.Request) { r.Method = http.MethodPost }); r.status != http.StatusOK {
			t.Fatalf("userinfo by POST with the access token in the header: %d %v", r.status, r.body)
		}
		inQuery := func(also bool) func(*http.Request) {
			return func(r *http.Request) {
				r.URL.RawQuery = url.Values{"access_token": {at}}.Encode()
				if !also {
					r.Header.Del("Authorization")
				}
			}
		}
		inBody := func(also bool) func(*http.Request) {
			return func(r *http.Request) {
				body := url.Values{"access_token": {at}}.Encode()
				r.Method = http.MethodPost
				r.Body = readCloser(body)
				r.ContentLength = int64(len(body))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if !also {
					r.Header.Del("Authorization")
				}
			}
		}
		payload := payload(t, at)
		// The access token's claims, signed by the provider's key but typed as
		// an ID token.
		signer, err := e.keys.Signer(e.ctx, keys.UseToken, jose.ES256, "JWT")
		if err != nil {
			t.Fatal(err)
		}
		asJWT := sign(t, signer, payload)
		// The same claims with the provider's kid, signed by someone else.
		forger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		kid := header(t, at).KeyID
		fs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: forger, KeyID: kid}},
			(&jose.SignerOptions{}).WithType("at+jwt"))
		forged := sign(t, fs, payload)
		// The access token's claims for another audience, properly typed and
		// signed by the provider's own token key.
		atSigner, err := e.keys.Signer(e.ctx, keys.UseToken, jose.ES256, "at+jwt")
		if err != nil {
			t.Fatal(err)
		}
		other := map[string]any{}
		for k, v := range payload {
			other[k] = v
		}
		other["aud"] = "https://ailleurs.example.fr"
		otherAudience := sign(t, atSigner, other)
		parts := strings.Split(at, ".")
		sig := []byte(parts[2])
		sig[10] = map[bool]byte{true: 'B', false: 'A'}[sig[10] == 'A']
		altered := parts[0] + "." + parts[1] + "." + string(sig)
		// Claims changed under the original signature.
		payload["mandate"] = "autre"
		changedClaims, _ := json.Marshal(payload)
		tampered := parts[0] + "." + b64(changedClaims) + "." + parts[2]

		cases := []struct {
			name  string
			token string
			edit  func(*http.Request)
		}{
			{"in the query string only", "", inQuery(false)},
			{"in the query string as well as the header", at, inQuery(true)},
			{"in the POST body only", "", inBody(false)},
			{"in the POST body as well as the header", at, inBody(true)},
			{"no token", "", nil},
			{"another scheme", "", func(r *http.Request) { r.Header.Set("Authorization", "Basic "+at) }},
			{"an altered signature", altered, nil},
			{"altered claims", tampered, nil},
			{"signed by another key with the provider's kid", forged, nil},
			{"the ID token", id, nil},
			{"the access token's claims typed JWT", asJWT, nil},
			{"not a JWT", "abc.def.ghi", nil},
			{"an access token for another audience", otherAudience, nil},
		}
		for _, c := range cases {
			r := e.userinfo(c.token, c.edit)
			wantError(t, c.name, r, http.StatusUnauthorized, "invalid_token")
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: WWW-Authenticate = %q", c.name, r.header.Get("WWW-Authenticate"))
			}
		}
		if r := e.userinfo(at, nil); r.status != http.StatusOK {
			t.Fatalf("the refused attempts broke the token: %d %v", r.status, r.body)
		}
		// The scheme's name is case-insensitive (RFC 7235 §2.1).
		lower := func(r *http.Request) { r.Header.Set("Authorization", "bearer "+at) }
		if r := e.userinfo(at, lower); r.status != http.StatusOK {
			t.Fatalf("userinfo with the scheme in lower case: %d %v", r.status, r.body)
		}
		e.clock.add(5*time.Minute + time.Second)
		wantError(t, "an expired access token", e.userinfo(at, nil), http.StatusUnauthorized, "invalid_token")
	})
}

func sign(t *testing.T, s jose.Signer, claims map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := obj.CompactSerialize()
	return raw
}
