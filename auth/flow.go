package auth

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
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

// pendingSignIn is a sign-in gone to a provider, sealed in a cookie of
// the browser that started it: nothing is written before the provider
// has authenticated someone (SPEC §11).
type pendingSignIn struct {
	State    string `json:"s"`
	Provider string `json:"p"`
	Purpose  string `json:"u"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Data     string `json:"d"`
	Created  int64  `json:"t"` // Unix milliseconds, on the service's clock
}

// maxPending bounds the sign-ins a browser may have under way (tabs,
// clicks again): past it the oldest are forgotten, so that the cookies
// stay within what a reverse proxy takes in a request's headers.
const maxPending = 4

// pendingCookiePrefix starts the names of the pending sign-ins' cookies;
// the rest names the state, so that tabs do not overwrite each other.
const pendingCookiePrefix = "aidants-connexion-"

func (s *Service) pendingCookie(state string) string {
	return s.cookieName(pendingCookiePrefix + store.Hash(state)[:16])
}

// Begin seals a pending sign-in into a cookie of this browser and returns
// the provider URL to redirect it to. The state (128 bits) and the PKCE
// verifier never leave the server but through that URL and the sealed
// cookie, which only the browser that started holds; nothing is written
// in the database.
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
	name := s.pendingCookie(state)
	sealed, err := s.pending.Seal(name, pendingSignIn{State: state, Provider: string(req.Provider), Purpose: req.Purpose,
		Nonce: nonce, Verifier: verifier, ReturnTo: req.ReturnTo, Data: req.Data, Created: s.now().UnixMilli()})
	if err != nil {
		return "", fmt.Errorf("auth: begin: %w", err)
	}
	s.forgetOldestPending(w, r)
	http.SetCookie(w, &http.Cookie{Name: name, Value: sealed, Path: "/", MaxAge: int(requestTTL.Seconds()),
		HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteLaxMode})
	return target, nil
}

// forgetOldestPending expires the cookies of the oldest pending sign-ins
// (and of unreadable ones) so that, with the one about to be set, at most
// maxPending remain.
func (s *Service) forgetOldestPending(w http.ResponseWriter, r *http.Request) {
	type found struct {
		name    string
		created int64
	}
	var all []found
	prefix := s.cookieName(pendingCookiePrefix)
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, prefix) {
			continue
		}
		var p pendingSignIn
		if s.pending.Open(c.Name, c.Value, &p) != nil {
			p.Created = 0 // unreadable: forgotten first
		}
		all = append(all, found{c.Name, p.Created})
	}
	slices.SortFunc(all, func(a, b found) int { return cmp.Compare(a.created, b.created) })
	for i := 0; i < len(all)-(maxPending-1); i++ {
		s.expireCookie(w, all[i].name)
	}
}

func (s *Service) expireCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteLaxMode})
}

// Binding returns this browser's binding secret, setting the cookie when
// the browser has none and extending its life otherwise: a pending
// authorization request is bound to it (provider). Tabs of one browser
// share it.
func (s *Service) Binding(w http.ResponseWriter, r *http.Request) string {
	name := s.cookieName(bindingCookie)
	v := ""
	if c, err := r.Cookie(name); err == nil && len(c.Value) >= 32 && len(c.Value) <= 64 {
		v = c.Value
	} else {
		v = store.RandomToken(32)
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: v, Path: "/", MaxAge: int(requestTTL.Seconds()) * 3,
		HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteLaxMode})
	return v
}

// BrowserBinding returns this browser's binding secret as its request
// carries it, or "".
func (s *Service) BrowserBinding(r *http.Request) string {
	if c, err := r.Cookie(s.cookieName(bindingCookie)); err == nil && len(c.Value) >= 32 && len(c.Value) <= 64 {
		return c.Value
	}
	return ""
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
// sign-in sealed in this browser's cookie, for this provider, not older
// than ten minutes, and not used before; the cookie is expired at once.
// Then the code is redeemed with the PKCE verifier and the ID token
// verified (issuer, audience, expiry, algorithm allow-list, nonce), the
// state recorded as spent (a replayed callback is refused), and the
// claims the service requires checked (rp.exchange); FranceConnect's
// second factor, when required, too. A refusal decided on the claims is a
// *ClaimsError, logged with the claim names and amr/acr values it holds.
func (s *Service) Complete(w http.ResponseWriter, r *http.Request, provider Provider) (*Answer, error) {
	p, ok := s.rps[provider]
	if !ok {
		return nil, fmt.Errorf("auth: unknown provider %q", provider)
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		return nil, fmt.Errorf("%w: no state", ErrBadCallback)
	}
	name := s.pendingCookie(state)
	c, err := r.Cookie(name)
	if err != nil {
		return nil, fmt.Errorf("%w: unknown or used state, or started in another browser", ErrBadCallback)
	}
	var req pendingSignIn
	if err := s.pending.Open(name, c.Value, &req); err != nil ||
		subtle.ConstantTimeCompare([]byte(req.State), []byte(state)) != 1 {
		s.expireCookie(w, name)
		return nil, fmt.Errorf("%w: unreadable or expired pending sign-in", ErrBadCallback)
	}
	// The cookie is kept only while the sign-in may still complete: when
	// the database or the provider's discovery fails before the code is
	// redeemed, the same callback works once they are back.
	refuse := func(err error) (*Answer, error) {
		s.expireCookie(w, name)
		return nil, err
	}
	switch {
	case req.Provider != string(provider):
		return refuse(fmt.Errorf("%w: state of a %s request on the %s callback", ErrBadCallback, req.Provider, provider))
	case s.now().Sub(time.UnixMilli(req.Created)) > requestTTL:
		return refuse(fmt.Errorf("%w: expired", ErrBadCallback))
	}
	spent, err := s.spent(r.Context(), state)
	if err != nil {
		// Not the answer's fault: the person may try again.
		return nil, fmt.Errorf("auth: complete: %w", err)
	}
	if spent {
		return refuse(fmt.Errorf("%w: unknown or used state", ErrBadCallback))
	}
	if e := q.Get("error"); e != "" {
		if e == "access_denied" {
			return refuse(ErrCancelled)
		}
		return refuse(fmt.Errorf("%w: provider error %q", ErrBadToken, e))
	}
	if err := p.ready(r.Context()); err != nil {
		return nil, err
	}
	// From here the code is redeemed, or the answer refused: either way
	// this pending sign-in is over.
	s.expireCookie(w, name)
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
	if err := s.spend(r.Context(), state, time.UnixMilli(req.Created).Add(requestTTL)); err != nil {
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

// spent tells whether the sign-in of this state was completed already.
func (s *Service) spent(ctx context.Context, state string) (bool, error) {
	var n int
	err := s.db.R.GetContext(ctx, &n, s.db.Rebind(`SELECT COUNT(*) FROM spent_requests WHERE kind = 'sign-in' AND id = ?`), store.Hash(state))
	return n > 0, err
}

// spend records the sign-in of this state as completed, once: the
// provider has authenticated someone, so the write is theirs. A second
// completion (a replay racing the first) is ErrBadCallback.
func (s *Service) spend(ctx context.Context, state string, expires time.Time) error {
	err := s.log.Write(ctx, func(tx *audit.Tx) error {
		res, err := tx.Exec(`INSERT INTO spent_requests (kind, id, expires_at) VALUES ('sign-in', ?, ?) ON CONFLICT DO NOTHING`,
			store.Hash(state), store.T(expires))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return errSpent
		}
		return nil
	})
	if errors.Is(err, errSpent) {
		return fmt.Errorf("%w: used state", ErrBadCallback)
	}
	if err != nil {
		return fmt.Errorf("auth: complete: %w", err)
	}
	return nil
}

var errSpent = errors.New("spent")

// SweepEvery is how often RunSweeper looks for expired records.
const SweepEvery = time.Minute

// RunSweeper deletes, until ctx ends, the records of used sign-ins and
// authorization requests once the sealed values they stand for have
// expired: through the index on expires_at, and only when a read found
// something to delete, so that an idle instance writes nothing.
func (s *Service) RunSweeper(ctx context.Context) {
	t := time.NewTicker(SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("sweeping expired requests failed", "err", err.Error())
			}
		}
	}
}

// Sweep deletes the expired records of used requests, if any.
func (s *Service) Sweep(ctx context.Context) error {
	now := store.T(s.now())
	var n int
	if err := s.db.R.GetContext(ctx, &n, s.db.Rebind(`SELECT COUNT(*) FROM (SELECT 1 FROM spent_requests WHERE expires_at < ? LIMIT 1) x`), now); err != nil || n == 0 {
		return err
	}
	return s.log.Write(ctx, func(tx *audit.Tx) error {
		_, err := tx.Exec(`DELETE FROM spent_requests WHERE expires_at < ?`, now)
		return err
	})
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
