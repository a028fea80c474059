// Package auth owns how people sign in: the relying-party side of OpenID
// Connect toward the aidants' identity provider and FranceConnect
// (authorization code with PKCE S256, state and nonce bound to the browser
// and single-use, ID tokens verified by go-oidc with an algorithm
// allow-list, one callback per provider, the claims the service requires —
// sub, a single audience, the acr asked, a second factor — checked, and a
// refusal naming them), the browser sessions (cookies via
// gorilla/sessions holding only an opaque id; the state lives on the
// server so that it can be revoked), principals and step-up.
//
// auth does not render pages: it returns typed errors that package web
// turns into French pages.
package auth

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"aidants/audit"
	"aidants/internal/seal"
	"aidants/org"
	"aidants/store"
)

// Provider names an identity provider.
type Provider string

// The providers.
const (
	Aidants       Provider = "aidants"
	FranceConnect Provider = "franceconnect"
)

// Config configures the service.
type Config struct {
	// Secure sets the Secure attribute and the __Host- prefix on cookies
	// (everywhere but plain-http loopback in development).
	Secure bool
	// SessionSecret signs and encrypts cookies (≥ 32 bytes).
	SessionSecret   []byte
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	StepUpMaxAge    time.Duration
	UsagerIdle      time.Duration
	UsagerAbsolute  time.Duration
	// PostLogoutURL is where providers send the browser after logout;
	// UsagerPostLogoutURL after the person leaves their space.
	PostLogoutURL       string
	UsagerPostLogoutURL string
	AidantsRP           ProviderConfig
	FranceConnect       ProviderConfig
	HTTPClient          *http.Client
	Logger              *slog.Logger
	Now                 func() time.Time
}

// Service signs people in and keeps their sessions.
type Service struct {
	cfg     Config
	log     *audit.Log
	db      *store.DB
	dir     *org.Directory
	cookies *sessions.CookieStore
	pending *seal.Sealer // pending sign-ins, in cookies
	idp     *idpMetrics
	rps     map[Provider]*rp
	logger  *slog.Logger
	now     func() time.Time
}

// New returns the service. It does not contact the providers: discovery
// happens at the first sign-in.
func New(cfg Config, log *audit.Log, dir *org.Directory) (*Service, error) {
	if len(cfg.SessionSecret) < 32 {
		return nil, errors.New("auth: the session secret must have at least 32 bytes")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	hashKey, err := hkdf.Key(sha256.New, cfg.SessionSecret, nil, "aidants session cookie hash v1", 64)
	if err != nil {
		return nil, fmt.Errorf("auth: derive keys: %w", err)
	}
	blockKey, err := hkdf.Key(sha256.New, cfg.SessionSecret, nil, "aidants session cookie block v1", 32)
	if err != nil {
		return nil, fmt.Errorf("auth: derive keys: %w", err)
	}
	cs := sessions.NewCookieStore(hashKey, blockKey)
	// Session cookies (no Max-Age): they end with the browser, and the
	// server enforces idle and absolute timeouts on its own record.
	cs.Options = &sessions.Options{Path: "/", HttpOnly: true, Secure: cfg.Secure, SameSite: http.SameSiteLaxMode}
	cs.MaxAge(0)
	for _, c := range cs.Codecs {
		if sc, ok := c.(*securecookie.SecureCookie); ok {
			sc.MaxAge(int(cfg.AbsoluteTimeout.Seconds()) + 60)
		}
	}
	for _, p := range []struct {
		name Provider
		cfg  ProviderConfig
	}{{Aidants, cfg.AidantsRP}, {FranceConnect, cfg.FranceConnect}} {
		if p.cfg.RequireMFA && len(p.cfg.MFAAMRs) == 0 && len(p.cfg.MFAACRs) == 0 {
			return nil, fmt.Errorf("auth: %s: a second factor is required but no amr or acr value counts as one", p.name)
		}
	}
	pending, err := seal.New(cfg.SessionSecret, "pending sign-in", requestTTL)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	idp := newIDPMetrics()
	s := &Service{cfg: cfg, log: log, db: log.DB(), dir: dir, cookies: cs, pending: pending, idp: idp, logger: cfg.Logger, now: cfg.Now,
		rps: map[Provider]*rp{
			Aidants:       {name: Aidants, cfg: cfg.AidantsRP, client: idp.instrument(cfg.HTTPClient, Aidants), now: cfg.Now},
			FranceConnect: {name: FranceConnect, cfg: cfg.FranceConnect, client: idp.instrument(cfg.HTTPClient, FranceConnect), now: cfg.Now},
		}}
	return s, nil
}

// cookieName applies the __Host- prefix when cookies are Secure (browsers
// refuse the prefix otherwise).
func (s *Service) cookieName(base string) string {
	if s.cfg.Secure {
		return "__Host-" + base
	}
	return base
}

// Cookie names.
const (
	aidantCookie  = "aidants-session"
	usagerCookie  = "aidants-usager"
	bindingCookie = "aidants-login"
)

// RefusedError is a sign-in the service refuses. Every Reason gets the same
// message for the person (no account enumeration); the reason goes to the
// audit log.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "auth: sign-in refused: " + e.Reason }

// Refusal reasons.
const (
	ReasonUnknown        = "unknown_account"
	ReasonDisabled       = "disabled"
	ReasonNotHabilitated = "habilitation_expired"
	ReasonNoOrganisation = "no_organisation"
	ReasonOtherPerson    = "other_person"
)

// ErrMFARequired is a sign-in without the required second factor; the
// error returned is a *ClaimsError that says which amr and acr arrived.
var ErrMFARequired = errors.New("auth: a second authentication factor is required")

// ErrBadCallback is a callback that does not answer a sign-in this browser
// started: unknown, replayed or expired state, or another browser's.
var ErrBadCallback = errors.New("auth: this sign-in answer is not valid")

// ErrCancelled is a sign-in the person cancelled at the provider.
var ErrCancelled = errors.New("auth: sign-in cancelled")

// ErrNoSession is returned when the request has no valid session.
var ErrNoSession = errors.New("auth: no session")
