// Package provider owns the OpenID provider for public services (SPEC §7):
// registered services and their authentication, authorization requests,
// single-use codes bound to client, redirect URI and PKCE verifier, ID and
// access tokens that carry the person's identity *and* who acts for them
// (act, authorization_details), userinfo, logout and discovery.
//
// A code or token is only ever issued or honoured inside a transaction
// that checks, with mandate.ActiveFor, that the mandate is still active:
// a revocation or an expiry bites at once, at every step.
//
// The machine endpoints are served by Handler; the aidant's choice of the
// person to act for is a page of package web, which calls Request,
// Eligible and IssueCode — after the aidant authenticated again when the
// service asked (max_age, prompt=login: AuthRequest.Reauthenticate, and
// Authenticated for an authentication made on the way). The ID token's
// acr says how the aidant authenticated (ACRFor); what a service asked
// through the claims parameter travels with its request and its code.
// docs/SERVICES.md is the guide for services.
package provider

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"aidants/audit"
	"aidants/internal/seal"
	"aidants/keys"
	"aidants/mandate"
	"aidants/store"
)

// Lifetimes of what the provider issues.
const (
	CodeTTL    = 60 * time.Second
	RequestTTL = 15 * time.Minute // an authorization request waiting for the aidant's choice
)

// The levels of assurance the provider asserts in acr, FranceConnect's
// eIDAS values. They say how the aidant who acts authenticated at the
// aidants' identity provider (docs/SERVICES.md): with one factor, eIDAS
// low; with a second factor, substantial. High (eidas3) is never
// asserted: it needs a means of identification notified at that level.
const (
	ACRLow         = "eidas1"
	ACRSubstantial = "eidas2"
)

// ACRs are the levels the provider asserts, lowest first.
var ACRs = []string{ACRLow, ACRSubstantial}

// ACRFor is the level an aidant's authentication reaches.
func ACRFor(mfa bool) string {
	if mfa {
		return ACRSubstantial
	}
	return ACRLow
}

// Config configures the provider.
type Config struct {
	Issuer         string // the instance's public URL
	PairwiseSecret []byte
	AccessTokenTTL time.Duration
	IDTokenTTL     time.Duration
	// Logger receives the detail of the errors answered as server_error
	// (default slog.Default()).
	Logger *slog.Logger
}

// Provider is the OpenID provider.
type Provider struct {
	cfg      Config
	issuer   string
	log      *audit.Log
	db       *store.DB
	keys     *keys.Manager
	mandates *mandate.Service
	logger   *slog.Logger
	now      func() time.Time
	purged   atomic.Int64 // when expired rows were last purged, Unix ms
	pending  *seal.Sealer // pending authorization requests
	services sync.Map     // id → *cachedService

	// ClientCredentials, when set, serves the client credentials grant
	// (auditors) at the same token endpoint.
	ClientCredentials func(w http.ResponseWriter, r *http.Request, form url.Values, hasBasic bool)
}

// New returns the provider.
func New(cfg Config, log *audit.Log, k *keys.Manager, m *mandate.Service) (*Provider, error) {
	if len(cfg.PairwiseSecret) < 32 {
		return nil, errors.New("provider: the pairwise secret must have at least 32 bytes")
	}
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = 5 * time.Minute
	}
	if cfg.IDTokenTTL <= 0 {
		cfg.IDTokenTTL = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pending, err := seal.New(cfg.PairwiseSecret, "pending authorization request", RequestTTL)
	if err != nil {
		return nil, fmt.Errorf("provider: %w", err)
	}
	return &Provider{cfg: cfg, issuer: strings.TrimSuffix(cfg.Issuer, "/"), log: log, db: log.DB(), keys: k, mandates: m,
		logger: cfg.Logger, now: log.Now, pending: pending}, nil
}

// Issuer is the provider's issuer identifier.
func (p *Provider) Issuer() string { return p.issuer }

// pairwise derives the identifier a service sees for a person or an aidant:
// stable for that service, different for every other, and not linkable
// across services without the instance's secret.
func (p *Provider) pairwise(kind, id, serviceID string) string {
	mac := hmac.New(sha256.New, p.cfg.PairwiseSecret)
	mac.Write([]byte(kind + "\x00" + serviceID + "\x00" + id))
	return hex.EncodeToString(mac.Sum(nil))
}

// Error is an OAuth 2.0 error (RFC 6749 §5.2) for the token and userinfo
// endpoints, whose descriptions are for developers. It is a refusal of
// the request as sent; a failure of the server is any other error.
type Error struct {
	Status      int
	Code        string
	Description string
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func errInvalidClient(d string) error { return &Error{http.StatusUnauthorized, "invalid_client", d} }
func errInvalidGrant(d string) error  { return &Error{http.StatusBadRequest, "invalid_grant", d} }
func errInvalidRequest(d string) error {
	return &Error{http.StatusBadRequest, "invalid_request", d}
}

// InvalidRequest, InvalidScope, InvalidClient and UnauthorizedClient are
// OAuth refusals for the grants served beside the provider's own.
func InvalidRequest(d string) error { return errInvalidRequest(d) }
func InvalidScope(d string) error   { return &Error{http.StatusBadRequest, "invalid_scope", d} }
func InvalidClient(d string) error  { return errInvalidClient(d) }
func UnauthorizedClient(d string) error {
	return &Error{http.StatusBadRequest, "unauthorized_client", d}
}

// TemporarilyUnavailable is a failure of something the server depends on
// and does not control (a client's published keys that cannot be
// fetched): not a refusal, the request may succeed later.
func TemporarilyUnavailable(d string) error {
	return &Error{http.StatusServiceUnavailable, "temporarily_unavailable", d}
}

// WriteError answers err as the provider's token endpoint does: an OAuth
// refusal (*Error) as is; any other error is the server's own failure,
// answered with a fixed description — 503 temporarily_unavailable when the
// request ran out of time, else 500 server_error — and logged with the
// request id. Never a refusal: a database that fails has refused nothing.
func (p *Provider) WriteError(w http.ResponseWriter, err error) { p.writeError(w, err) }

// WriteJSON answers v as an uncacheable JSON document.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (p *Provider) writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{http.StatusInternalServerError, "server_error", "internal error"}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			e = &Error{http.StatusServiceUnavailable, "temporarily_unavailable", "the server is busy, try again"}
		}
		// The site's middleware named the request in the answer's header.
		p.logger.Error("oauth request failed", "request_id", w.Header().Get("X-Request-Id"), "status", e.Status, "err", err.Error())
	}
	if e.Status == http.StatusUnauthorized {
		challenge := `Bearer error="` + e.Code + `"`
		if e.Code == "invalid_client" {
			// The token endpoint's client authentication scheme, not the
			// Bearer of userinfo (RFC 6749 §5.2).
			challenge = `Basic realm="aidants"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Description})
}

// PivotClaims are the person's identity claims, each released by the
// scope of the same name.
var PivotClaims = []string{"given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry", "email"}

// ScopeGroups are FranceConnect's scopes that stand for several claims, so
// that a service written for FranceConnect asks us the same way.
var ScopeGroups = map[string][]string{
	"profile":        {"given_name", "family_name", "birthdate", "gender"},
	"birth":          {"birthplace", "birthcountry"},
	"identite_pivot": {"given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry"},
}

// knownScope tells whether this provider understands scope s.
func knownScope(s string) bool {
	_, group := ScopeGroups[s]
	return s == "openid" || group || slices.Contains(PivotClaims, s)
}

// releases tells whether the scopes release the pivot claim name.
func releases(scopes []string, name string) bool {
	for _, s := range scopes {
		if s == name || slices.Contains(ScopeGroups[s], name) {
			return true
		}
	}
	return false
}

// purgeEvery is how often expired codes, tokens and client assertions
// are deleted.
const purgeEvery = 10 * time.Second

// purge deletes, at most once per purgeEvery and inside a write an
// authenticated client or aidant asked for, what has expired: codes (kept
// for as long as the tokens they gave may live, so that a replay still
// revokes them), tokens and client assertions' jti.
func (p *Provider) purge(tx *audit.Tx) error {
	now := tx.Now()
	last := p.purged.Load()
	if now.UnixMilli()-last < purgeEvery.Milliseconds() || !p.purged.CompareAndSwap(last, now.UnixMilli()) {
		return nil
	}
	for _, q := range []struct {
		sql    string
		before time.Time
	}{
		{`DELETE FROM oidc_codes WHERE expires_at < ?`, now.Add(-p.cfg.AccessTokenTTL)},
		{`DELETE FROM oidc_tokens WHERE expires_at < ?`, now},
		{`DELETE FROM client_assertions WHERE expires_at < ?`, now},
	} {
		if _, err := tx.Exec(q.sql, store.T(q.before)); err != nil {
			return err
		}
	}
	return nil
}

// idTokenAlgs are the algorithms of ID tokens and signed userinfo
// answers: each service registers one.
var idTokenAlgs = []string{"ES256", "RS256"}

// Discovery is the provider's metadata (OpenID Connect Discovery 1.0,
// RFC 8414): every value it supports, nothing it does not — an absent
// request_uri_parameter_supported would mean true.
func (p *Provider) Discovery() map[string]any {
	var assertion []string
	for _, a := range assertionAlgs {
		assertion = append(assertion, string(a))
	}
	return map[string]any{
		"issuer":                                           p.issuer,
		"authorization_endpoint":                           p.issuer + "/oidc/authorize",
		"token_endpoint":                                   p.issuer + "/oidc/token",
		"userinfo_endpoint":                                p.issuer + "/oidc/userinfo",
		"jwks_uri":                                         p.issuer + "/oidc/jwks",
		"end_session_endpoint":                             p.issuer + "/oidc/logout",
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query"},
		"grant_types_supported":                            []string{"authorization_code", "client_credentials"},
		"subject_types_supported":                          []string{"pairwise"},
		"id_token_signing_alg_values_supported":            idTokenAlgs,
		"userinfo_signing_alg_values_supported":            idTokenAlgs,
		"token_endpoint_auth_methods_supported":            []string{PrivateKeyJWT, ClientSecretBasic, ClientSecretPost},
		"token_endpoint_auth_signing_alg_values_supported": assertion,
		"code_challenge_methods_supported":                 []string{"S256"},
		"scopes_supported":                                 append([]string{"openid", "profile", "birth", "identite_pivot"}, PivotClaims...),
		"claims_supported": append([]string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "rep_scope", "act",
			"authorization_details"}, PivotClaims...),
		"claim_types_supported":                          []string{"normal"},
		"claims_parameter_supported":                     true,
		"request_parameter_supported":                    false,
		"request_uri_parameter_supported":                false,
		"prompt_values_supported":                        promptValues,
		"acr_values_supported":                           ACRs,
		"ui_locales_supported":                           []string{"fr"},
		"authorization_response_iss_parameter_supported": true,
		"authorization_details_types_supported":          []string{"mandate"},
		"service_documentation":                          p.issuer + ServiceDocumentationPath,
	}
}

// ServiceDocumentationPath is where the instance tells public services
// how to connect (a page of package web).
const ServiceDocumentationPath = "/services/documentation"
