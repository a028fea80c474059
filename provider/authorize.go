package provider

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"aidants/audit"
	"aidants/mandate"
	"aidants/store"
)

// AuthRequest is a validated authorization request waiting for the
// aidant's choice.
type AuthRequest struct {
	ID            string     `db:"id"`
	ServiceID     string     `db:"service_id"`
	RedirectURI   string     `db:"redirect_uri"`
	State         string     `db:"state"`
	Nonce         string     `db:"nonce"`
	CodeChallenge string     `db:"code_challenge"`
	Scope         string     `db:"scope"`
	RepScope      store.List `db:"rep_scope"` // démarche codes asked for, empty for any
	CreatedAt     store.Time `db:"created_at"`
	ExpiresAt     store.Time `db:"expires_at"`
}

// PageError is an authorization request that cannot be answered by a
// redirect (unknown client, unregistered redirect URI): the browser gets
// an error page and goes nowhere.
type PageError struct{ Reason string }

func (e *PageError) Error() string { return "provider: " + e.Reason }

// RedirectError is an authorization error sent back to the service's
// redirect URI (RFC 6749 §4.1.2.1, with iss per RFC 9207).
type RedirectError struct {
	RedirectURI, State, Code, Description string
}

func (e *RedirectError) Error() string { return e.Code + ": " + e.Description }

// URL is where to send the browser.
func (e *RedirectError) URL(issuer string) string {
	q := url.Values{"error": {e.Code}, "error_description": {e.Description}, "iss": {issuer}}
	if e.State != "" {
		q.Set("state", e.State)
	}
	return withQuery(e.RedirectURI, q)
}

func withQuery(base string, q url.Values) string {
	u, _ := url.Parse(base)
	merged := u.Query()
	for k, vs := range q {
		merged[k] = vs
	}
	u.RawQuery = merged.Encode()
	return u.String()
}

// Authorize validates an authorization request (SPEC §7): the client and
// its exact redirect URI first (else a *PageError: never a redirect to an
// unregistered place), then code flow only, openid scope, state, nonce,
// PKCE S256, acr_values, and the rep_scope asked through claims (else a
// *RedirectError). Unknown parameters are ignored.
func (p *Provider) Authorize(ctx context.Context, q url.Values) (*AuthRequest, *Service, error) {
	one := func(name string) (string, bool) {
		vs := q[name]
		if len(vs) > 1 {
			return "", false
		}
		if len(vs) == 0 {
			return "", true
		}
		return vs[0], true
	}
	clientID, ok1 := one("client_id")
	redirect, ok2 := one("redirect_uri")
	if !ok1 || !ok2 || clientID == "" {
		return nil, nil, &PageError{"client_id and redirect_uri are required, once"}
	}
	svc, err := p.Service(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, &PageError{"unknown client_id"}
	}
	if err != nil {
		return nil, nil, err
	}
	if !slices.Contains(svc.RedirectURIs, redirect) {
		return nil, nil, &PageError{"redirect_uri is not one the service registered"}
	}
	state, _ := one("state")
	fail := func(code, desc string) (*AuthRequest, *Service, error) {
		return nil, nil, &RedirectError{RedirectURI: redirect, State: state, Code: code, Description: desc}
	}
	for _, name := range []string{"response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "acr_values", "prompt", "claims"} {
		if _, ok := one(name); !ok {
			return fail("invalid_request", name+" is repeated")
		}
	}
	if rt, _ := one("response_type"); rt != "code" {
		return fail("unsupported_response_type", "only the authorization code flow (response_type=code)")
	}
	scope, _ := one("scope")
	scopes := strings.Fields(scope)
	if !slices.Contains(scopes, "openid") {
		return fail("invalid_scope", "the openid scope is required")
	}
	if state == "" || len(state) > 512 {
		return fail("invalid_request", "state is required (at most 512 characters)")
	}
	nonce, _ := one("nonce")
	if nonce == "" || len(nonce) > 512 {
		return fail("invalid_request", "nonce is required (at most 512 characters)")
	}
	challenge, _ := one("code_challenge")
	method, _ := one("code_challenge_method")
	if method != "S256" || len(challenge) != 43 || strings.Trim(challenge, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		return fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
	}
	if acr, _ := one("acr_values"); acr != "" && !slices.Contains(strings.Fields(acr), ACR) {
		return fail("invalid_request", "acr_values must allow "+ACR)
	}
	if prompt, _ := one("prompt"); slices.Contains(strings.Fields(prompt), "none") {
		return fail("login_required", "an aidant must choose the person to act for")
	}
	var rep []string
	if claims, _ := one("claims"); claims != "" {
		if rep, err = repScope(claims); err != nil {
			return fail("invalid_request", err.Error())
		}
	}
	// Keep only the scopes this provider knows.
	var kept []string
	for _, s := range scopes {
		if knownScope(s) {
			kept = append(kept, s)
		}
	}
	return &AuthRequest{ServiceID: svc.ID, RedirectURI: redirect, State: state, Nonce: nonce, CodeChallenge: challenge,
		Scope: strings.Join(kept, " "), RepScope: rep}, svc, nil
}

// repScope reads the rep_scope values asked through the claims parameter
// (FranceConnect's contract) and returns their démarche codes.
func repScope(raw string) ([]string, error) {
	var c map[string]map[string]*struct {
		Essential bool     `json:"essential"`
		Value     string   `json:"value"`
		Values    []string `json:"values"`
	}
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return nil, errors.New("claims is not valid JSON")
	}
	var out []string
	for _, where := range []string{"id_token", "userinfo"} {
		r := c[where]["rep_scope"]
		if r == nil {
			continue
		}
		vals := r.Values
		if r.Value != "" {
			vals = append(vals, r.Value)
		}
		for _, v := range vals {
			d, ok := mandate.DemarcheByRepScope(v)
			if !ok {
				return nil, fmt.Errorf("unknown rep_scope value %q", v)
			}
			if !slices.Contains(out, d.Code) {
				out = append(out, d.Code)
			}
		}
	}
	return out, nil
}

// Save keeps a validated request until the aidant chooses, and returns the
// token that names it in the aidant's pages.
func (p *Provider) Save(ctx context.Context, r *AuthRequest) (string, error) {
	token := store.RandomToken(24)
	err := p.log.Write(ctx, func(tx *audit.Tx) error {
		now := tx.Now()
		if err := p.purge(tx); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO oidc_requests (id, service_id, redirect_uri, state, nonce, code_challenge, scope, rep_scope,
			created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, store.Hash(token), r.ServiceID, r.RedirectURI, r.State,
			r.Nonce, r.CodeChallenge, r.Scope, r.RepScope, store.T(now), store.T(now.Add(RequestTTL)))
		return err
	})
	return token, err
}

// ErrRequestGone is a request that expired, was answered, or never was.
// Request, IssueCode and Cancel return it only for such a request; a
// database that fails gives its own error.
var ErrRequestGone = errors.New("provider: the authorization request is no longer pending")

const requestColumns = `id, service_id, redirect_uri, state, nonce, code_challenge, scope, rep_scope, created_at, expires_at`

// Request returns a pending request and its service.
func (p *Provider) Request(ctx context.Context, token string) (*AuthRequest, *Service, error) {
	var r AuthRequest
	err := p.db.R.GetContext(ctx, &r, p.db.Rebind(`SELECT `+requestColumns+` FROM oidc_requests WHERE id = ?`), store.Hash(token))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrRequestGone
	}
	if err != nil {
		return nil, nil, fmt.Errorf("provider: request: %w", err)
	}
	if !p.now().Before(r.ExpiresAt.Time) {
		return nil, nil, ErrRequestGone
	}
	svc, err := p.Service(ctx, r.ServiceID)
	if errors.Is(err, store.ErrNotFound) { // disabled since the request
		return nil, nil, ErrRequestGone
	}
	if err != nil {
		return nil, nil, fmt.Errorf("provider: request: %w", err)
	}
	return &r, svc, nil
}

// Cancel answers a pending request with access_denied (the aidant gave up)
// and returns where to send the browser.
func (p *Provider) Cancel(ctx context.Context, token string) (string, error) {
	r, _, err := p.Request(ctx, token)
	if err != nil {
		return "", err
	}
	err = p.log.Write(ctx, func(tx *audit.Tx) error {
		_, err := tx.Exec(`DELETE FROM oidc_requests WHERE id = ?`, r.ID)
		return err
	})
	if err != nil {
		return "", err
	}
	return (&RedirectError{RedirectURI: r.RedirectURI, State: r.State, Code: "access_denied",
		Description: "the aidant did not choose anyone"}).URL(p.issuer), nil
}

// Choice is a person the aidant may act for at this service, and the
// démarches that fit.
type Choice struct {
	MandateID  string
	UsagerID   string
	GivenName  string
	FamilyName string
	Birthdate  string
	Demarches  []string
}

// Fit returns the démarches of a mandate usable for this request: active
// in the mandate, served by the service, and asked for when the request
// named some.
func Fit(m *mandate.Mandate, svc *Service, r *AuthRequest, now time.Time) []string {
	var out []string
	for _, d := range m.ActiveDemarches() {
		if svc.Serves(d) && (len(r.RepScope) == 0 || slices.Contains(r.RepScope, d)) && m.Covers(d, now) {
			out = append(out, d)
		}
	}
	return out
}

// Eligible lists the persons the aidant's organisation may act for at the
// service: an active mandate covering a démarche the service serves (and
// the requested rep_scope). search filters by name.
func (p *Provider) Eligible(ctx context.Context, orgID string, r *AuthRequest, svc *Service, search string) ([]Choice, error) {
	ms, err := p.mandates.ActiveInOrganisation(ctx, orgID, search)
	if err != nil {
		return nil, err
	}
	now := p.now()
	var out []Choice
	for _, v := range ms {
		if fit := Fit(&v.Mandate, svc, r, now); len(fit) > 0 {
			out = append(out, Choice{MandateID: v.ID, UsagerID: v.UsagerID, GivenName: v.UsagerGiven, FamilyName: v.UsagerFamily,
				Birthdate: v.UsagerBirth, Demarches: fit})
		}
	}
	return out, nil
}

// Acting is the signed-in aidant who chooses.
type Acting struct {
	AidantID       string
	OrganisationID string
	AuthTime       time.Time
}

// ErrNotEligible is a choice the aidant was not offered: another
// organisation's mandate, a revoked, expired or unknown one, a démarche
// the service does not serve or the mandate does not cover. It looks like
// tampering, and is returned only when the records say so.
var ErrNotEligible = errors.New("provider: this person cannot be chosen for this service")

// IssueCode answers the request with a single-use code for the chosen
// person, mandate and démarche (mandate.used), checking in the same
// transaction that the mandate is active, belongs to the aidant's
// organisation and fits; it returns the URL to send the browser to.
func (p *Provider) IssueCode(ctx context.Context, a Acting, token, mandateID, demarche string) (string, error) {
	r, svc, err := p.Request(ctx, token)
	if err != nil {
		return "", err
	}
	code := store.RandomToken(32)
	err = p.log.Write(ctx, func(tx *audit.Tx) error {
		var n int
		if err := tx.Get(&n, `SELECT COUNT(*) FROM oidc_requests WHERE id = ?`, r.ID); err != nil {
			return fmt.Errorf("provider: issue code: %w", err)
		}
		if n != 1 { // answered meanwhile, in another tab
			return ErrRequestGone
		}
		if !slices.Contains(svc.RedirectURIs, r.RedirectURI) { // unregistered since the request
			return ErrRequestGone
		}
		// Only what the mandate's record says refuses the choice (and is
		// journaled as access.denied by the caller): a database that fails
		// to read it has shown no tampering.
		m, err := mandate.ActiveFor(tx, mandateID, demarche)
		if errors.Is(err, mandate.ErrNotFound) || errors.Is(err, mandate.ErrRevoked) || errors.Is(err, mandate.ErrExpired) {
			return ErrNotEligible
		}
		if err != nil {
			return fmt.Errorf("provider: issue code: %w", err)
		}
		if m.OrganisationID != a.OrganisationID || !slices.Contains(Fit(m, svc, r, tx.Now()), demarche) {
			return ErrNotEligible
		}
		now := tx.Now()
		if _, err := tx.Exec(`DELETE FROM oidc_requests WHERE id = ?`, r.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO oidc_codes (hash, service_id, redirect_uri, code_challenge, nonce, scope, aidant_id,
			organisation_id, usager_id, mandate_id, demarche, auth_time, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			store.Hash(code), svc.ID, r.RedirectURI, r.CodeChallenge, r.Nonce, r.Scope, a.AidantID, a.OrganisationID, m.UsagerID,
			m.ID, demarche, store.T(a.AuthTime), store.T(now), store.T(now.Add(CodeTTL))); err != nil {
			return err
		}
		_, err = tx.Append(audit.Event{Type: audit.MandateUsed, Actor: audit.Actor{Kind: audit.ActorAidant, ID: a.AidantID},
			Aidant: a.AidantID, Organisation: a.OrganisationID, Usager: m.UsagerID, Mandate: m.ID, Service: svc.ID,
			Demarches: []string{demarche}})
		return err
	})
	if err != nil {
		return "", err
	}
	return withQuery(r.RedirectURI, url.Values{"code": {code}, "state": {r.State}, "iss": {p.issuer}}), nil
}
