package provider

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"github.com/go-jose/go-jose/v4"

	"aidants/internal/jwtverify"
	"aidants/store"
)

// Logout answers an RP-initiated logout (OpenID Connect RP-Initiated
// Logout 1.0): the browser goes back to post_logout_redirect_uri only when
// it is one the client registered, the client being named by client_id or
// by the audience of an ID token this provider signed. It returns "" when
// the browser should stay on the provider's own page, with the service's
// name when known, and an error only when the keys or the registrations
// cannot be read (the caller answers a server error, not a page that
// pretends the service is unknown).
func (p *Provider) Logout(ctx context.Context, q url.Values) (redirect, serviceName string, err error) {
	clientID := q.Get("client_id")
	if hint := q.Get("id_token_hint"); hint != "" {
		aud, err := p.hintAudience(ctx, hint)
		if err != nil {
			return "", "", err
		}
		if aud == "" || (clientID != "" && clientID != aud) {
			return "", "", nil
		}
		clientID = aud
	}
	svc, err := p.Service(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("provider: logout: %w", err)
	}
	target := q.Get("post_logout_redirect_uri")
	if target == "" || !slices.Contains(svc.PostLogoutURIs, target) {
		return "", svc.Name, nil
	}
	if state := q.Get("state"); state != "" {
		return withQuery(target, url.Values{"state": {state}}), svc.Name, nil
	}
	return target, svc.Name, nil
}

// hintAudience returns the client of an ID token this provider signed
// (expired or not), "" for any other token, or the error of reading the
// provider's keys.
func (p *Provider) hintAudience(ctx context.Context, raw string) (string, error) {
	tok, err := jwtverify.Parse(raw, jose.ES256, jose.RS256)
	if err != nil {
		return "", nil
	}
	key, ok, err := p.keys.Public(ctx, tok.KeyID)
	if err != nil {
		return "", fmt.Errorf("provider: logout: keys: %w", err)
	}
	if !ok {
		return "", nil
	}
	// An expired hint is fine: logging out comes after the ID token's
	// short life.
	c, err := tok.Verify(key, jwtverify.Expect{Issuer: p.issuer, AllowExpired: true, Now: p.now()})
	if err != nil || len(c.Audience) != 1 {
		return "", nil
	}
	return c.Audience[0], nil
}
