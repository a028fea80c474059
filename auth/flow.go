package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"aidants/audit"
	"aidants/store"
)

// requestTTL bounds the time between leaving for the provider and coming
// back.
const requestTTL = 10 * time.Minute

// Request starts a sign-in at a provider.
type Request struct {
	Provider Provider
	// Purpose says what the callback does with the answer (a login, a
	// step-up, a consent to a mandate…); Complete returns it.
	Purpose string
	// ReturnTo is a local path to go to afterwards.
	ReturnTo string
	// Data is kept with the request and returned by Complete (a draft id).
	Data string
	// Nonce, when set, is sent instead of a random one: mandates bind the
	// person's authentication to a draft through it (SPEC §5.1).
	Nonce string
	// Prompt ("login") and MaxAge (≥ 0) force a fresh authentication.
	Prompt string
	MaxAge time.Duration
	// Extra authorization parameters (FranceConnect "claims", for one).
	Extra url.Values
}

// Begin records a pending sign-in bound to this browser and returns the
// provider URL to redirect it to. The state (128 bits) and the PKCE
// verifier never leave the server but through that URL; the state is
// stored hashed, with a hash of a random cookie that only this browser
// holds.
func (s *Service) Begin(w http.ResponseWriter, r *http.Request, req Request) (string, error) {
	p, ok := s.rps[req.Provider]
	if !ok {
		return "", fmt.Errorf("auth: unknown provider %q", req.Provider)
	}
	if !LocalPath(req.ReturnTo) {
		req.ReturnTo = "/"
	}
	state := store.RandomToken(24)
	nonce := req.Nonce
	if nonce == "" {
		nonce = store.RandomToken(24)
	}
	verifier := oauth2.GenerateVerifier()
	maxAge := time.Duration(-1)
	if req.Prompt != "" || req.MaxAge > 0 {
		maxAge = req.MaxAge
	}
	target, err := p.authURL(r.Context(), state, nonce, verifier, req.Prompt, maxAge, req.Extra)
	if err != nil {
		return "", err
	}
	binding := s.binding(w, r)
	err = s.log.Write(r.Context(), func(tx *audit.Tx) error {
		if _, err := tx.Exec(`DELETE FROM auth_requests WHERE created_at < ?`, store.T(tx.Now().Add(-requestTTL))); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO auth_requests (state_hash, provider, purpose, browser_hash, nonce, verifier, return_to, data, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, store.Hash(state), string(req.Provider), req.Purpose, store.Hash(binding),
			nonce, verifier, req.ReturnTo, req.Data, store.T(tx.Now()))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("auth: begin: %w", err)
	}
	return target, nil
}

// binding returns this browser's binding secret, setting the cookie when
// the browser has none. Tabs of one browser share it.
func (s *Service) binding(w http.ResponseWriter, r *http.Request) string {
	name := s.cookieName(bindingCookie)
	if c, err := r.Cookie(name); err == nil && len(c.Value) >= 32 && len(c.Value) <= 64 {
		return c.Value
	}
	v := store.RandomToken(32)
	http.SetCookie(w, &http.Cookie{Name: name, Value: v, Path: "/", MaxAge: int(requestTTL.Seconds()) * 3,
		HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteLaxMode})
	return v
}

// Answer is a verified answer of a provider to a request this browser
// made.
type Answer struct {
	Provider   Provider
	Purpose    string
	ReturnTo   string
	Data       string
	Nonce      string
	Issuer     string
	Subject    string
	RawIDToken string
	IDToken    *oidc.IDToken
	// Claims merges the ID token's claims and userinfo's.
	Claims   map[string]any
	AuthTime time.Time
	MFA      bool
}

// Claim returns a string claim, or "".
func (a *Answer) Claim(name string) string {
	v, _ := a.Claims[name].(string)
	return v
}

// Complete checks a callback for provider: the state must name a pending
// request of this browser, for this provider, not older than ten minutes;
// it is consumed first, so a replayed callback finds nothing. Then the code
// is redeemed with the PKCE verifier and the ID token verified (issuer,
// audience, expiry, algorithm allow-list, nonce), and the claims the
// service requires checked (rp.exchange); FranceConnect's second factor,
// when required, too. A refusal decided on the claims is a *ClaimsError,
// logged with the claim names and amr/acr values it holds.
func (s *Service) Complete(r *http.Request, provider Provider) (*Answer, error) {
	p, ok := s.rps[provider]
	if !ok {
		return nil, fmt.Errorf("auth: unknown provider %q", provider)
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		return nil, fmt.Errorf("%w: no state", ErrBadCallback)
	}
	var req struct {
		Provider    string     `db:"provider"`
		Purpose     string     `db:"purpose"`
		BrowserHash string     `db:"browser_hash"`
		Nonce       string     `db:"nonce"`
		Verifier    string     `db:"verifier"`
		ReturnTo    string     `db:"return_to"`
		Data        string     `db:"data"`
		CreatedAt   store.Time `db:"created_at"`
	}
	err := s.log.Write(r.Context(), func(tx *audit.Tx) error {
		if err := tx.Get(&req, `SELECT provider, purpose, browser_hash, nonce, verifier, return_to, data, created_at
			FROM auth_requests WHERE state_hash = ?`, store.Hash(state)); err != nil {
			return store.NotFound(err, "auth request")
		}
		_, err := tx.Exec(`DELETE FROM auth_requests WHERE state_hash = ?`, store.Hash(state))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: unknown or used state", ErrBadCallback)
	}
	if err != nil {
		// Not the answer's fault: the person may try again.
		return nil, fmt.Errorf("auth: complete: %w", err)
	}
	c, cerr := r.Cookie(s.cookieName(bindingCookie))
	switch {
	case req.Provider != string(provider):
		return nil, fmt.Errorf("%w: state of a %s request on the %s callback", ErrBadCallback, req.Provider, provider)
	case cerr != nil || subtle.ConstantTimeCompare([]byte(store.Hash(c.Value)), []byte(req.BrowserHash)) != 1:
		return nil, fmt.Errorf("%w: started in another browser", ErrBadCallback)
	case s.now().Sub(req.CreatedAt.Time) > requestTTL:
		return nil, fmt.Errorf("%w: expired", ErrBadCallback)
	}
	if e := q.Get("error"); e != "" {
		if e == "access_denied" {
			return nil, ErrCancelled
		}
		return nil, fmt.Errorf("%w: provider error %q", ErrBadToken, e)
	}
	if err := p.ready(r.Context()); err != nil {
		return nil, err
	}
	// RFC 9207: the answer names its issuer; refuse another one's.
	if iss := q.Get("iss"); iss != p.cfg.Issuer && (iss != "" || p.issParam) {
		return nil, fmt.Errorf("%w: answer from issuer %q", ErrBadToken, iss)
	}
	code := q.Get("code")
	if code == "" {
		return nil, fmt.Errorf("%w: no code", ErrBadCallback)
	}
	ex, err := p.exchange(r.Context(), code, req.Verifier, req.Nonce)
	if err != nil {
		s.logRefusal(err)
		return nil, err
	}
	a := &Answer{
		Provider: provider, Purpose: req.Purpose, ReturnTo: req.ReturnTo, Data: req.Data, Nonce: req.Nonce,
		Issuer: ex.idToken.Issuer, Subject: ex.idToken.Subject, RawIDToken: ex.raw, IDToken: ex.idToken,
		Claims: ex.claims, MFA: p.hasMFA(ex.claims),
	}
	// The aidants' provider's refusal is journaled by FinishAidant; a
	// person identifying with FranceConnect is refused here, before any
	// purpose sees the answer.
	if provider != Aidants && p.cfg.RequireMFA && !a.MFA {
		err := p.mfaRefusal(ex.claims, ErrBadToken)
		s.logRefusal(err)
		return nil, err
	}
	if at, ok := ex.claims["auth_time"].(float64); ok {
		a.AuthTime = time.Unix(int64(at), 0).UTC()
	} else {
		a.AuthTime = ex.idToken.IssuedAt.UTC()
	}
	return a, nil
}

// logRefusal logs a refusal decided on the answer's claims: which were
// missing, which values arrived (ClaimsError holds nothing else).
func (s *Service) logRefusal(err error) {
	var ce *ClaimsError
	if errors.As(err, &ce) {
		s.logger.Info("sign-in refused", ce.logAttrs()...)
	}
}

// LocalPath tells whether p is a path on this site (not "//host", not a
// URL), safe to redirect to.
func LocalPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "/\\") &&
		!strings.ContainsAny(p, "\r\n\t")
}

// ProviderLogoutURL is where to send the browser to end its session at the
// provider too, or "" when the provider offers no end-session endpoint.
func (s *Service) ProviderLogoutURL(ctx context.Context, provider Provider, idTokenHint string) string {
	return s.rps[provider].logoutURL(ctx, idTokenHint, s.cfg.PostLogoutURL, store.RandomToken(16))
}
