package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"aidants/internal/jwtverify"
)

// maxAnswer bounds what the service reads of a provider's key set or
// userinfo answer.
const maxAnswer = 1 << 20

// fetchJWKS fetches the provider's key set. A key that cannot be read, or
// is not a public key (a symmetric "oct" key, a point off its curve), is
// skipped, as RFC 7517 §5 asks: it can verify nothing. Only a key set that
// cannot be fetched, or is not a JSON key set, is the provider's failure
// (ErrProviderUnavailable).
func (p *rp) fetchJWKS(ctx context.Context) (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.jwksURI, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s jwks: %v", ErrProviderUnavailable, p.name, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s jwks: %v", ErrProviderUnavailable, p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s jwks: %s", ErrProviderUnavailable, p.name, resp.Status)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&raw); err != nil || raw.Keys == nil {
		return nil, fmt.Errorf("%w: %s jwks: not a JSON key set", ErrProviderUnavailable, p.name)
	}
	set := &jose.JSONWebKeySet{}
	for _, k := range raw.Keys {
		var jwk jose.JSONWebKey
		if json.Unmarshal(k, &jwk) != nil || !jwk.IsPublic() {
			continue
		}
		set.Keys = append(set.Keys, jwk)
	}
	return set, nil
}

// keySet verifies ID-token signatures with go-oidc's remote key set. When
// no key verifies, it fetches the key set itself to tell the two causes
// apart: a key set that cannot be fetched is the provider's outage (stored
// where the context's outageKey points, for exchange to answer
// ErrProviderUnavailable), a key set that holds no key for the token is a
// forgery (go-oidc's error, a refusal).
type keySet struct {
	remote *oidc.RemoteKeySet
	rp     *rp
}

type outageKey struct{}

func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	if err != nil {
		if _, ferr := k.rp.fetchJWKS(ctx); ferr != nil {
			if outage, ok := ctx.Value(outageKey{}).(*error); ok {
				*outage = ferr
			}
		}
	}
	return payload, err
}

// userinfo fetches the claims of the userinfo endpoint: a JSON object, or
// a JWT (application/jwt, as FranceConnect v2 answers) signed by the
// provider for this client, verified by jwtverify with the provider's
// keys, issuer and this client as audience. An endpoint that cannot be
// reached or answers an error is unavailable; an answer that does not
// verify is refused.
func (p *rp) userinfo(ctx context.Context, tok *oauth2.Token) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.userinfoURI, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s userinfo: %v", ErrProviderUnavailable, p.name, err)
	}
	tok.SetAuthHeader(req)
	req.Header.Set("Accept", "application/json, application/jwt")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s userinfo: %v", ErrProviderUnavailable, p.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s userinfo: %v", ErrProviderUnavailable, p.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s userinfo: %s", ErrProviderUnavailable, p.name, resp.Status)
	}
	if len(body) > maxAnswer {
		return nil, fmt.Errorf("%w: userinfo larger than %d bytes", ErrBadToken, maxAnswer)
	}
	claims := map[string]any{}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/jwt" {
		if err := json.Unmarshal(body, &claims); err != nil {
			return nil, fmt.Errorf("%w: userinfo is not a JSON object", ErrBadToken)
		}
		return claims, nil
	}
	t, err := jwtverify.Parse(string(body), joseAlgs()...)
	if err != nil {
		return nil, fmt.Errorf("%w: signed userinfo: %v", ErrBadToken, err)
	}
	set, err := p.fetchJWKS(ctx)
	if err != nil {
		return nil, err
	}
	// A signed userinfo need not expire (Core §5.3.2), so exp is read
	// here, not required; nbf and iat are checked.
	now := p.now()
	c, _, err := t.VerifySet(set, jwtverify.Expect{Issuer: p.cfg.Issuer, Audience: []string{p.cfg.ClientID},
		Now: now, AllowExpired: true, Leeway: jwtverify.Leeway}, &claims)
	if err != nil {
		return nil, fmt.Errorf("%w: signed userinfo: %v", ErrBadToken, err)
	}
	if c.Expiry != nil && c.Expiry.Time().Add(jwtverify.Leeway).Before(now) {
		return nil, fmt.Errorf("%w: signed userinfo: %v", ErrBadToken, jwtverify.ErrExpired)
	}
	return claims, nil
}
