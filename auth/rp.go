package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
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
	// ACRValues is sent as acr_values when set, and the answer's acr must
	// then meet it: one of the values asked, or an eIDAS level at least as
	// high as the lowest asked (eidas1 < eidas2 < eidas3).
	ACRValues string
	// RedirectURL is this provider's own callback: one per provider, so
	// that an answer meant for one can never be taken for the other.
	RedirectURL string
	// RequireMFA refuses an answer that shows no second factor: an amr
	// value listed in MFAAMRs (RFC 8176: "mfa", "otp", "hwk"…), or an acr
	// listed in MFAACRs. New refuses RequireMFA with both lists empty.
	RequireMFA bool
	MFAAMRs    []string
	MFAACRs    []string
	// MatchEmailRequiresVerified (aidants' provider): a pending aidant is
	// found by email only when the answer says email_verified: true.
	MatchEmailRequiresVerified bool
}

// rp is a relying party of one provider. Discovery is lazy and retried, so
// that the service starts even when the provider is down (and, in dev mode,
// before its own listener accepts connections).
type rp struct {
	name   Provider
	cfg    ProviderConfig
	client *http.Client
	now    func() time.Time

	mu          sync.Mutex
	provider    *oidc.Provider
	verifier    *oidc.IDTokenVerifier
	oauth       *oauth2.Config
	endSession  string
	issParam    bool
	jwksURI     string
	userinfoURI string
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
	// go-oidc's remote key set, which keeps the keys and fetches them again
	// for a kid it does not know; wrapped to tell a forged signature from a
	// key set that cannot be fetched.
	keys := &keySet{rp: p, remote: oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), p.client), meta.JWKS)}
	p.verifier = oidc.NewVerifier(p.cfg.Issuer, keys,
		&oidc.Config{ClientID: p.cfg.ClientID, SupportedSigningAlgs: SigningAlgs, Now: p.now})
	p.oauth = &oauth2.Config{
		ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret,
		Endpoint: prov.Endpoint(), RedirectURL: p.cfg.RedirectURL, Scopes: p.cfg.Scopes,
	}
	p.endSession, p.issParam, p.jwksURI, p.userinfoURI = meta.EndSession, meta.IssParam, meta.JWKS, prov.UserInfoEndpoint()
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
// — its shape and algorithm (jwtverify), then its signature, issuer,
// audience and expiry (go-oidc), then what go-oidc leaves to the relying
// party (nonce, sub, iat, nbf, a single audience, azp) — and merges the
// userinfo claims, whose subject must be the same. Last, the acr must meet
// acr_values.
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
		return nil, p.refuse("claims_missing", []string{"id_token"}, nil, "")
	}
	// The compact form of one of the allowed algorithms, and a size bound,
	// before go-oidc reads it: go-jose would also take the JSON
	// serialisation, and split a million dots.
	if _, err := jwtverify.Parse(raw, joseAlgs()...); err != nil {
		return nil, fmt.Errorf("%w: id token: %v", ErrBadToken, err)
	}
	var outage error
	idt, err := p.verifier.Verify(context.WithValue(ctx, outageKey{}, &outage), raw)
	if outage != nil {
		return nil, outage
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if err := p.checkIDToken(idt, claims, nonce); err != nil {
		return nil, err
	}
	if p.userinfoURI != "" {
		uc, err := p.userinfo(ctx, tok)
		if err != nil {
			return nil, err
		}
		switch sub, _ := uc["sub"].(string); {
		case sub == "":
			return nil, p.refuse("userinfo_subject", []string{"sub (userinfo)"}, nil, "")
		case sub != idt.Subject:
			return nil, p.refuse("userinfo_subject", nil, nil, "the ID token's sub")
		}
		for k, v := range uc {
			if _, set := claims[k]; !set {
				claims[k] = v
			}
		}
	}
	if err := p.checkACR(claims); err != nil {
		return nil, err
	}
	return &exchanged{idToken: idt, raw: raw, claims: claims, token: tok}, nil
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
	tok, err := jwtverify.Parse(raw, joseAlgs()...)
	if err != nil {
		return "", fmt.Errorf("%w: evidence token: %v", ErrBadToken, err)
	}
	set, err := p.fetchJWKS(ctx)
	if err != nil {
		return "", err
	}
	if k, err := tok.SigningKey(set); err == nil {
		b, err := k.MarshalJSON()
		return string(b), err
	}
	return "", fmt.Errorf("%w: no published key verifies the evidence token", ErrBadToken)
}

// joseAlgs is SigningAlgs for go-jose.
func joseAlgs() []jose.SignatureAlgorithm {
	algs := make([]jose.SignatureAlgorithm, len(SigningAlgs))
	for i, a := range SigningAlgs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	return algs
}
