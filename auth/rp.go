package auth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"aidants/internal/jwtverify"
)

// SigningAlgs is the allow-list of ID-token algorithms: asymmetric only,
// never "none", never HS* (which would let a public key act as a secret).
var SigningAlgs = []string{oidc.ES256, oidc.RS256, oidc.PS256}

// ProviderConfig is one identity provider this instance signs people in
// with.
type ProviderConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	Scopes       []string
	ACRValues    string
	// RedirectURL is this provider's own callback: one per provider, so
	// that an answer meant for one can never be taken for the other.
	RedirectURL string
	// RequireMFA refuses an ID token without "mfa" in amr (or one of
	// MFAACRs as acr).
	RequireMFA bool
	MFAACRs    []string
}

// rp is a relying party of one provider. Discovery is lazy and retried, so
// that the service starts even when the provider is down (and, in dev mode,
// before its own listener accepts connections).
type rp struct {
	name   string
	cfg    ProviderConfig
	client *http.Client

	mu         sync.Mutex
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      *oauth2.Config
	endSession string
	issParam   bool
	jwksURI    string
}

// ErrProviderUnavailable is returned when the identity provider cannot be
// reached or answers nonsense.
var ErrProviderUnavailable = errors.New("auth: identity provider unavailable")

func (p *rp) ready(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.provider != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, p.client), 10*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(ctx, p.cfg.Issuer)
	if err != nil {
		return fmt.Errorf("%w: %s discovery: %v", ErrProviderUnavailable, p.name, err)
	}
	var meta struct {
		JWKS       string   `json:"jwks_uri"`
		EndSession string   `json:"end_session_endpoint"`
		IssParam   bool     `json:"authorization_response_iss_parameter_supported"`
		Methods    []string `json:"code_challenge_methods_supported"`
	}
	if err := prov.Claims(&meta); err != nil {
		return fmt.Errorf("%w: %s discovery: %v", ErrProviderUnavailable, p.name, err)
	}
	p.provider = prov
	p.verifier = prov.VerifierContext(oidc.ClientContext(context.Background(), p.client),
		&oidc.Config{ClientID: p.cfg.ClientID, SupportedSigningAlgs: SigningAlgs})
	p.oauth = &oauth2.Config{
		ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret,
		Endpoint: prov.Endpoint(), RedirectURL: p.cfg.RedirectURL, Scopes: p.cfg.Scopes,
	}
	p.endSession, p.issParam, p.jwksURI = meta.EndSession, meta.IssParam, meta.JWKS
	return nil
}

// authURL is where the browser goes to authenticate.
func (p *rp) authURL(ctx context.Context, state, nonce, verifier string, prompt string, maxAge time.Duration, extra url.Values) (string, error) {
	if err := p.ready(ctx); err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if p.cfg.ACRValues != "" {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", p.cfg.ACRValues))
	}
	if prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", prompt))
	}
	if maxAge >= 0 {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", fmt.Sprint(int(maxAge.Seconds()))))
	}
	for k, vs := range extra {
		for _, v := range vs {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
	}
	return p.oauth.AuthCodeURL(state, opts...), nil
}

// exchanged is a verified answer of the provider.
type exchanged struct {
	idToken *oidc.IDToken
	raw     string
	claims  map[string]any
	token   *oauth2.Token
}

// ErrBadToken is returned when the provider's answer does not verify.
var ErrBadToken = errors.New("auth: the identity provider's answer does not verify")

// exchange redeems the code with the PKCE verifier, verifies the ID token
// (issuer, audience, expiry, signature within SigningAlgs) and its nonce,
// and merges the userinfo claims, whose subject must be the same.
func (p *rp) exchange(ctx context.Context, code, verifier, nonce string) (*exchanged, error) {
	if err := p.ready(ctx); err != nil {
		return nil, err
	}
	ctx = oidc.ClientContext(ctx, p.client)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tok, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return nil, fmt.Errorf("%w: token endpoint: %s", ErrBadToken, re.ErrorCode)
		}
		return nil, fmt.Errorf("%w: %s token endpoint: %v", ErrProviderUnavailable, p.name, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, fmt.Errorf("%w: no id_token", ErrBadToken)
	}
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, fmt.Errorf("%w: nonce does not match", ErrBadToken)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if p.provider.UserInfoEndpoint() != "" {
		ui, err := p.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return nil, fmt.Errorf("%w: %s userinfo: %v", ErrProviderUnavailable, p.name, err)
		}
		if ui.Subject != idt.Subject {
			return nil, fmt.Errorf("%w: userinfo subject differs from the ID token's", ErrBadToken)
		}
		var uc map[string]any
		if err := ui.Claims(&uc); err != nil {
			return nil, fmt.Errorf("%w: userinfo: %v", ErrBadToken, err)
		}
		for k, v := range uc {
			if _, set := claims[k]; !set {
				claims[k] = v
			}
		}
	}
	return &exchanged{idToken: idt, raw: raw, claims: claims, token: tok}, nil
}

// hasMFA tells whether the authentication used a second factor.
func (p *rp) hasMFA(claims map[string]any) bool {
	if amr, ok := claims["amr"].([]any); ok {
		for _, v := range amr {
			if v == "mfa" {
				return true
			}
		}
	}
	acr, _ := claims["acr"].(string)
	return acr != "" && slices.Contains(p.cfg.MFAACRs, acr)
}

// logoutURL is the provider's end-session URL, or "" when it has none.
func (p *rp) logoutURL(ctx context.Context, idTokenHint, postLogout, state string) string {
	if err := p.ready(ctx); err != nil || p.endSession == "" {
		return ""
	}
	u, err := url.Parse(p.endSession)
	if err != nil {
		return ""
	}
	q := u.Query()
	if idTokenHint != "" {
		q.Set("id_token_hint", idTokenHint)
	}
	q.Set("client_id", p.cfg.ClientID)
	q.Set("post_logout_redirect_uri", postLogout)
	q.Set("state", state)
	u.RawQuery = q.Encode()
	return u.String()
}

// verifyingKey returns, as JSON, the provider's public key that verifies
// raw (an ID token go-oidc already verified): consent evidence must say
// which key signed it, since provider keys rotate.
func (p *rp) verifyingKey(ctx context.Context, raw string) (string, error) {
	if err := p.ready(ctx); err != nil {
		return "", err
	}
	tok, err := jwtverify.Parse(raw, jose.ES256, jose.RS256, jose.PS256)
	if err != nil {
		return "", fmt.Errorf("%w: evidence token: %v", ErrBadToken, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.jwksURI, nil)
	if err != nil {
		return "", err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: %s jwks: %v", ErrProviderUnavailable, p.name, err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return "", fmt.Errorf("%w: %s jwks: %v", ErrProviderUnavailable, p.name, err)
	}
	if k, err := tok.SigningKey(&set); err == nil {
		b, err := k.MarshalJSON()
		return string(b), err
	}
	return "", fmt.Errorf("%w: no published key verifies the evidence token", ErrBadToken)
}
