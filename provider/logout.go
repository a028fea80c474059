package provider

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"

	"github.com/go-jose/go-jose/v4"
)

// Logout answers an RP-initiated logout (OpenID Connect RP-Initiated
// Logout 1.0): the browser goes back to post_logout_redirect_uri only when
// it is one the client registered, the client being named by client_id or
// by the audience of an ID token this provider signed. It returns "" when
// the browser should stay on the provider's own page, with the service's
// name when known.
func (p *Provider) Logout(ctx context.Context, q url.Values) (redirect, serviceName string) {
	clientID := q.Get("client_id")
	if hint := q.Get("id_token_hint"); hint != "" {
		if aud := p.hintAudience(ctx, hint); aud != "" && (clientID == "" || clientID == aud) {
			clientID = aud
		} else {
			return "", ""
		}
	}
	svc, err := p.Service(ctx, clientID)
	if err != nil {
		return "", ""
	}
	target := q.Get("post_logout_redirect_uri")
	if target == "" || !slices.Contains(svc.PostLogoutURIs, target) {
		return "", svc.Name
	}
	if state := q.Get("state"); state != "" {
		return withQuery(target, url.Values{"state": {state}}), svc.Name
	}
	return target, svc.Name
}

// hintAudience returns the client of an ID token this provider signed
// (expired or not), or "".
func (p *Provider) hintAudience(ctx context.Context, raw string) string {
	tok, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil || len(tok.Signatures) != 1 {
		return ""
	}
	key, ok, err := p.keys.Public(ctx, tok.Signatures[0].Header.KeyID)
	if err != nil || !ok {
		return ""
	}
	payload, err := tok.Verify(key)
	if err != nil {
		return ""
	}
	var c struct {
		Iss string   `json:"iss"`
		Aud audience `json:"aud"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Iss != p.issuer || len(c.Aud) != 1 {
		return ""
	}
	return c.Aud[0]
}
