package provider

import (
	"context"
	"crypto/hmac"
	"crypto/subtle"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/internal/jwtverify"
	"aidants/mandate"
	"aidants/store"
)

// AuthRequest is a validated authorization request waiting for the
// aidant's choice.
type AuthRequest struct {
	ID            string     `json:"id"`
	ServiceID     string     `json:"svc"`
	RedirectURI   string     `json:"ru"`
	State         string     `json:"st,omitempty"`
	Nonce         string     `json:"n"`
	CodeChallenge string     `json:"cc"`
	Scope         string     `json:"sc"`
	RepScope      store.List `json:"rep,omitempty"` // démarche codes asked for, empty for any
	// AuthAfter is when the aidant's authentication must have happened at
	// the earliest (max_age, prompt=login); zero when any will do.
	AuthAfter store.Time `json:"aa"`
	Claims    Requested  `json:"cl"`
	CreatedAt store.Time `json:"ca"`
	ExpiresAt store.Time `json:"ea"`
	// Browser is the SHA-256 of the binding secret of the browser that
	// brought the request: only that browser may answer it.
	Browser string `json:"b"`
	// PromptNone is a request that must be answered at once, without
	// showing the aidant anything (prompt=none): it is never saved.
	PromptNone bool `json:"-"`
}

// Reauthenticate tells whether an aidant who authenticated at authTime
// must authenticate again before choosing for this request.
func (r *AuthRequest) Reauthenticate(authTime time.Time) bool {
	return !r.AuthAfter.IsZero() && authTime.Before(r.AuthAfter.Time)
}

// ACR returns the level of assurance the ID token will assert for an
// aidant who authenticated with a second factor or not (ACRFor), lowered
// to the highest level the service asked as essential when it did so
// (eIDAS levels are ordered: a higher one meets a lower one's
// requirements); ok is false when no level asked can be met.
func (r *AuthRequest) ACR(mfa bool) (acr string, ok bool) {
	reached := ACRFor(mfa)
	if len(r.Claims.ACR) == 0 {
		return reached, true
	}
	for i := slices.Index(ACRs, reached); i >= 0; i-- {
		if slices.Contains(r.Claims.ACR, ACRs[i]) {
			return ACRs[i], true
		}
	}
	return "", false
}

// Refusal is the error answer to this request, sent to the service's
// redirect URI.
func (r *AuthRequest) Refusal(code, description string) *RedirectError {
	return &RedirectError{RedirectURI: r.RedirectURI, State: r.State, Code: code, Description: description}
}

// Requested is what a service asked through the claims parameter (OpenID
// Connect Core §5.5), as far as this provider understands it: rep_scope
// is kept apart, in AuthRequest.RepScope; claims it does not know are
// ignored, as Core says.
type Requested struct {
	IDToken  []string `json:"id_token,omitempty"` // identity claims asked in the ID token
	UserInfo []string `json:"userinfo,omitempty"` // identity claims asked from userinfo
	// Subject is the person asked for by value: the sub this service
	// knows them by. Only that person may be chosen.
	Subject string `json:"sub,omitempty"`
	// ACR are the acr values asked as essential: the authentication must
	// meet one of them, or the request fails.
	ACR []string `json:"acr,omitempty"`
}

func (q Requested) empty() bool {
	return len(q.IDToken) == 0 && len(q.UserInfo) == 0 && q.Subject == "" && len(q.ACR) == 0
}

// Value implements driver.Valuer: JSON, or "" when nothing was asked.
func (q Requested) Value() (driver.Value, error) {
	if q.empty() {
		return "", nil
	}
	b, err := json.Marshal(q)
	return string(b), err
}

// Scan implements sql.Scanner.
func (q *Requested) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	case nil:
	default:
		return fmt.Errorf("provider: cannot scan %T into Requested", src)
	}
	*q = Requested{}
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, q)
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

// Prompt values (Core §3.1.2.1). The chooser page is where the aidant
// consents and selects, so consent and select_account ask nothing more.
var promptValues = []string{"none", "login", "consent", "select_account"}

// maxAgeBound is the largest max_age that still says something: a longer
// one asks nothing of a session that lives twelve hours at most.
const maxAgeBound = 10 * 365 * 24 * 3600

// Authorize validates an authorization request (SPEC §7, OpenID Connect
// Core §3.1.2): the client and its exact redirect URI first (else a
// *PageError: never a redirect to an unregistered place), then, answered
// to the redirect URI as *RedirectError, request objects (not supported),
// code flow only, openid scope, state, nonce, PKCE S256, prompt, max_age
// and the claims parameter. acr_values is a preference (the ID token says
// what was achieved), and unknown parameters are ignored.
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
	object, ok3 := one("request")
	objectURI, ok4 := one("request_uri")
	if !ok1 || !ok2 || clientID == "" {
		return nil, nil, &PageError{"client_id and redirect_uri are required, once"}
	}
	if !ok3 || !ok4 {
		return nil, nil, &PageError{"request and request_uri may be given once"}
	}
	svc, err := p.Service(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, &PageError{"unknown client_id"}
	}
	if err != nil {
		return nil, nil, err
	}
	state, _ := one("state")
	if redirect == "" && (object != "" || objectURI != "") {
		redirect, state = answerTo(svc, object, state)
	}
	if !slices.Contains(svc.RedirectURIs, redirect) {
		return nil, nil, &PageError{"redirect_uri is not one the service registered"}
	}
	fail := func(code, desc string) (*AuthRequest, *Service, error) {
		return nil, nil, &RedirectError{RedirectURI: redirect, State: state, Code: code, Description: desc}
	}
	// Core §6: a provider that does not read request objects says so,
	// rather than act on parameters the object may contradict.
	if object != "" {
		return fail("request_not_supported", "request objects are not supported: send the parameters in the query")
	}
	if objectURI != "" {
		return fail("request_uri_not_supported", "request_uri is not supported: send the parameters in the query")
	}
	for _, name := range []string{"response_type", "response_mode", "scope", "state", "nonce", "code_challenge", "code_challenge_method",
		"acr_values", "prompt", "max_age", "claims"} {
		if _, ok := one(name); !ok {
			return fail("invalid_request", name+" is repeated")
		}
	}
	if rt, _ := one("response_type"); rt != "code" {
		return fail("unsupported_response_type", "only the authorization code flow (response_type=code)")
	}
	if rm, _ := one("response_mode"); rm != "" && rm != "query" {
		return fail("invalid_request", "only response_mode=query")
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
	prompt, _ := one("prompt")
	maxAge, _ := one("max_age")
	after, none, err := freshness(prompt, maxAge, p.now())
	if err != nil {
		return fail("invalid_request", err.Error())
	}
	var asked Requested
	var rep []string
	if claims, _ := one("claims"); claims != "" {
		if asked, rep, err = parseClaims(claims); err != nil {
			return fail("invalid_request", err.Error())
		}
	}
	if len(asked.ACR) > 0 && !slices.ContainsFunc(asked.ACR, func(v string) bool { return slices.Contains(ACRs, v) }) {
		return fail("unmet_authentication_requirements", "the essential acr asked is beyond what this provider asserts ("+
			strings.Join(ACRs, ", ")+")")
	}
	// Keep only the scopes this provider knows.
	var kept []string
	for _, s := range scopes {
		if knownScope(s) {
			kept = append(kept, s)
		}
	}
	return &AuthRequest{ServiceID: svc.ID, RedirectURI: redirect, State: state, Nonce: nonce, CodeChallenge: challenge,
		Scope: strings.Join(kept, " "), RepScope: rep, AuthAfter: store.T(after), Claims: asked, PromptNone: none}, svc, nil
}

// freshness reads prompt and max_age: after is when the aidant's
// authentication must have happened at the earliest (zero: any will do),
// none a request to answer without showing anything.
func freshness(prompt, maxAge string, now time.Time) (after time.Time, none bool, err error) {
	if maxAge != "" {
		n, err := strconv.ParseInt(maxAge, 10, 64)
		if err != nil || n < 0 {
			return after, false, errors.New("max_age must be a number of seconds, 0 or more")
		}
		if n <= maxAgeBound {
			after = now.Add(-time.Duration(n) * time.Second)
		}
	}
	prompts := strings.Fields(prompt)
	for _, v := range prompts {
		if !slices.Contains(promptValues, v) {
			return after, false, fmt.Errorf("unknown prompt value %q (none, login, consent, select_account)", v)
		}
		if v == "login" {
			after = now
		}
	}
	none = slices.Contains(prompts, "none")
	if none && len(prompts) > 1 {
		return after, false, errors.New("prompt=none cannot be combined with other values")
	}
	return after, none, nil
}

// requestObjectAlgs are the algorithms a request object is read with, only
// to find where to send its refusal.
var requestObjectAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// answerTo finds where to send the refusal of a request whose redirect
// URI, and state, travel inside a request object (openid-client's JAR
// sends client_id and request only): the object's own redirect_uri and
// state, read without checking the signature — they only pick one of the
// service's registered addresses and are echoed back —, else the
// service's only registered redirect URI (RFC 6749 §3.1.2.3). "" when
// neither says.
func answerTo(svc *Service, object, state string) (string, string) {
	if object != "" {
		var c struct {
			RedirectURI string `json:"redirect_uri"`
			State       string `json:"state"`
		}
		tok, err := jwtverify.Parse(object, requestObjectAlgs...)
		if err == nil && tok.UnsafeClaims(&c) == nil && slices.Contains(svc.RedirectURIs, c.RedirectURI) {
			if state == "" && len(c.State) <= 512 {
				state = c.State
			}
			return c.RedirectURI, state
		}
	}
	if len(svc.RedirectURIs) == 1 {
		return svc.RedirectURIs[0], state
	}
	return "", state
}

// parseClaims reads the claims parameter (Core §5.5): the identity claims
// asked in each place, the person asked for by sub, the acr values asked
// as essential, and the démarche codes of the rep_scope values asked
// (FranceConnect's contract). Claims it does not know are ignored; a
// parameter that is not what Core describes is refused.
func parseClaims(raw string) (Requested, []string, error) {
	var out Requested
	var rep []string
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &top); err != nil || top == nil {
		return out, nil, errors.New("claims must be a JSON object")
	}
	for _, where := range []string{"id_token", "userinfo"} {
		section, ok := top[where]
		if !ok || string(section) == "null" {
			continue
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(section, &members); err != nil || members == nil {
			return out, nil, fmt.Errorf("claims.%s must be a JSON object", where)
		}
		names := slices.Sorted(maps.Keys(members))
		for _, name := range names {
			var m struct {
				Essential bool            `json:"essential"`
				Value     json.RawMessage `json:"value"`
				Values    json.RawMessage `json:"values"`
			}
			if body := members[name]; string(body) != "null" {
				if err := json.Unmarshal(body, &m); err != nil {
					return out, nil, fmt.Errorf("claims.%s.%s must be null or an object with essential (a boolean), value or values (an array)", where, name)
				}
			}
			// strs reads value and values as strings, for the claims
			// whose values this provider acts on.
			strs := func() ([]string, error) {
				var vals []string
				if len(m.Values) > 0 && string(m.Values) != "null" {
					if err := json.Unmarshal(m.Values, &vals); err != nil {
						return nil, fmt.Errorf("claims.%s.%s.values must be an array of strings", where, name)
					}
				}
				if len(m.Value) > 0 && string(m.Value) != "null" {
					var v string
					if err := json.Unmarshal(m.Value, &v); err != nil {
						return nil, fmt.Errorf("claims.%s.%s.value must be a string", where, name)
					}
					vals = append(vals, v)
				}
				return vals, nil
			}
			switch {
			case name == "rep_scope":
				vals, err := strs()
				if err != nil {
					return out, nil, err
				}
				for _, v := range vals {
					d, ok := mandate.DemarcheByRepScope(v)
					if !ok {
						return out, nil, fmt.Errorf("unknown rep_scope value %q", v)
					}
					if !slices.Contains(rep, d.Code) {
						rep = append(rep, d.Code)
					}
				}
			case name == "sub":
				vals, err := strs()
				if err != nil {
					return out, nil, err
				}
				for _, v := range vals {
					if v == "" || len(v) > 200 || (out.Subject != "" && out.Subject != v) {
						return out, nil, errors.New("claims: sub may be asked with one value only")
					}
					out.Subject = v
				}
			case name == "acr":
				vals, err := strs()
				if err != nil {
					return out, nil, err
				}
				if m.Essential { // else a preference, like acr_values
					for _, v := range vals {
						if !slices.Contains(out.ACR, v) {
							out.ACR = append(out.ACR, v)
						}
					}
				}
			case slices.Contains(PivotClaims, name):
				if where == "id_token" {
					out.IDToken = append(out.IDToken, name)
				} else {
					out.UserInfo = append(out.UserInfo, name)
				}
			}
		}
	}
	return out, rep, nil
}

// requestCookie is the name pending requests are sealed under.
const requestSeal = "demande"

// Seal keeps a validated request until the aidant chooses, without
// writing anything (the request is anonymous): it returns the request
// sealed, the token that names it in the aidant's pages, bound to the
// browser whose binding secret is given (auth.Service.Binding).
func (p *Provider) Seal(r *AuthRequest, binding string) (string, error) {
	if binding == "" {
		return "", errors.New("provider: a pending request needs the browser's binding")
	}
	now := p.now()
	r.ID = store.RandomToken(16)
	r.CreatedAt, r.ExpiresAt = store.T(now), store.T(now.Add(RequestTTL))
	r.Browser = store.Hash(binding)
	token, err := p.pending.Seal(requestSeal, r)
	if err != nil {
		return "", fmt.Errorf("provider: seal the request: %w", err)
	}
	return token, nil
}

// Authenticated returns the token of the request with the authentication
// an aidant made, at authTime, on the way to it (a sign-in or step-up
// whose return is its chooser). Identity providers give auth_time in
// whole seconds, so an authentication in the very second the request
// asked for reads as before it; made for this request, it is not: the
// request then asks for that authentication, to the second. An
// authentication of an earlier second changes nothing; a token that does
// not open is returned as it is (the chooser will say it is gone).
func (p *Provider) Authenticated(token, binding string, authTime time.Time) (string, error) {
	r, err := p.open(token, binding)
	if err != nil {
		return token, nil
	}
	at := authTime.Truncate(time.Second)
	if !(r.AuthAfter.After(at) && r.AuthAfter.Before(at.Add(time.Second))) {
		return token, nil
	}
	r.AuthAfter = store.T(at)
	return p.pending.Seal(requestSeal, r)
}

// ErrRequestGone is a request that expired, was answered, or never was
// (or that another browser brought). Request, IssueCode and Cancel return
// it only for such a request; a database that fails gives its own error.
var ErrRequestGone = errors.New("provider: the authorization request is no longer pending")

// open unseals a pending request of this browser, not expired.
func (p *Provider) open(token, binding string) (*AuthRequest, error) {
	var r AuthRequest
	if err := p.pending.Open(requestSeal, token, &r); err != nil {
		return nil, ErrRequestGone
	}
	if binding == "" || subtle.ConstantTimeCompare([]byte(store.Hash(binding)), []byte(r.Browser)) != 1 {
		return nil, ErrRequestGone
	}
	if !p.now().Before(r.ExpiresAt.Time) {
		return nil, ErrRequestGone
	}
	return &r, nil
}

// Request returns a pending request of this browser and its service.
func (p *Provider) Request(ctx context.Context, token, binding string) (*AuthRequest, *Service, error) {
	r, err := p.open(token, binding)
	if err != nil {
		return nil, nil, err
	}
	var n int
	if err := p.db.R.GetContext(ctx, &n, p.db.Rebind(`SELECT COUNT(*) FROM spent_requests WHERE kind = 'authorization' AND id = ?`), r.ID); err != nil {
		return nil, nil, fmt.Errorf("provider: request: %w", err)
	}
	if n > 0 {
		return nil, nil, ErrRequestGone
	}
	svc, err := p.Service(ctx, r.ServiceID)
	if errors.Is(err, store.ErrNotFound) { // disabled since the request
		return nil, nil, ErrRequestGone
	}
	if err != nil {
		return nil, nil, fmt.Errorf("provider: request: %w", err)
	}
	return r, svc, nil
}

// spend records, in the unit that answers it, that the request was
// answered: a second answer (another tab, a replay) is ErrRequestGone.
func spend(tx *audit.Tx, r *AuthRequest) error {
	res, err := tx.Exec(`INSERT INTO spent_requests (kind, id, expires_at) VALUES ('authorization', ?, ?) ON CONFLICT DO NOTHING`,
		r.ID, r.ExpiresAt)
	if err != nil {
		return fmt.Errorf("provider: answer the request: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("provider: answer the request: %w", err)
	} else if n == 0 {
		return ErrRequestGone
	}
	return nil
}

// Cancel answers a pending request with access_denied (the aidant gave up)
// and returns where to send the browser.
func (p *Provider) Cancel(ctx context.Context, token, binding string) (string, error) {
	return p.Refuse(ctx, token, binding, "access_denied", "the aidant did not choose anyone")
}

// Refuse answers a pending request with the error code (RFC 6749
// §4.1.2.1) and returns where to send the browser.
func (p *Provider) Refuse(ctx context.Context, token, binding, code, description string) (string, error) {
	r, _, err := p.Request(ctx, token, binding)
	if err != nil {
		return "", err
	}
	err = p.log.Write(ctx, func(tx *audit.Tx) error { return spend(tx, r) })
	if err != nil {
		return "", err
	}
	return r.Refusal(code, description).URL(p.issuer), nil
}

// Choice is a person the aidant may act for at this service, and the
// démarches that fit.
type Choice struct {
	MandateID  string
	UsagerID   string
	GivenName  string
	FamilyName string
	Birthdate  string
	Gender     string
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
		if !p.asked(r, svc, v.UsagerID) {
			continue
		}
		if fit := Fit(&v.Mandate, svc, r, now); len(fit) > 0 {
			out = append(out, Choice{MandateID: v.ID, UsagerID: v.UsagerID, GivenName: v.UsagerGiven, FamilyName: v.UsagerFamily,
				Birthdate: v.UsagerBirth, Gender: v.UsagerGender, Demarches: fit})
		}
	}
	return out, nil
}

// asked tells whether the request allows person usagerID: any person,
// unless the service asked for one by sub (claims parameter).
func (p *Provider) asked(r *AuthRequest, svc *Service, usagerID string) bool {
	return r.Claims.Subject == "" || hmac.Equal([]byte(p.pairwise("usager", usagerID, svc.ID)), []byte(r.Claims.Subject))
}

// Acting is the signed-in aidant who chooses.
type Acting struct {
	AidantID       string
	OrganisationID string
	AuthTime       time.Time
	MFA            bool // the authentication used a second factor
}

// ErrReauthenticate is a choice made on an authentication older than the
// service accepts (max_age, prompt=login): the aidant authenticates again
// at the aidants' provider, then chooses.
var ErrReauthenticate = errors.New("provider: the aidant must authenticate again first")

// ErrUnmetACR is a choice whose authentication cannot meet the acr the
// service asked as essential: the request is to be refused
// (unmet_authentication_requirements), whoever is chosen.
var ErrUnmetACR = errors.New("provider: the authentication does not meet the essential acr asked")

// ErrNotEligible is a choice the aidant was not offered: another
// organisation's mandate, a revoked, expired or unknown one, a démarche
// the service does not serve or the mandate does not cover. It looks like
// tampering, and is returned only when the records say so.
var ErrNotEligible = errors.New("provider: this person cannot be chosen for this service")

// IssueCode answers the request with a single-use code for the chosen
// person, mandate and démarche (mandate.used), checking in the same
// transaction that the mandate is active, belongs to the aidant's
// organisation and fits; it returns the URL to send the browser to. The
// aidant's authentication must be recent enough for the request
// (ErrReauthenticate) and meet the essential acr asked (ErrUnmetACR);
// the code remembers the level it reached and the claims asked.
func (p *Provider) IssueCode(ctx context.Context, a Acting, token, binding, mandateID, demarche string) (string, error) {
	r, svc, err := p.Request(ctx, token, binding)
	if err != nil {
		return "", err
	}
	if r.Reauthenticate(a.AuthTime) {
		return "", ErrReauthenticate
	}
	acr, ok := r.ACR(a.MFA)
	if !ok {
		return "", ErrUnmetACR
	}
	code := store.RandomToken(32)
	err = p.log.Write(ctx, func(tx *audit.Tx) error {
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
		if m.OrganisationID != a.OrganisationID || !p.asked(r, svc, m.UsagerID) || !slices.Contains(Fit(m, svc, r, tx.Now()), demarche) {
			return ErrNotEligible
		}
		now := tx.Now()
		if err := spend(tx, r); err != nil { // answered meanwhile, in another tab
			return err
		}
		if _, err := tx.Exec(`INSERT INTO oidc_codes (hash, service_id, redirect_uri, code_challenge, nonce, scope, claims, aidant_id,
			organisation_id, usager_id, mandate_id, demarche, auth_time, acr, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			store.Hash(code), svc.ID, r.RedirectURI, r.CodeChallenge, r.Nonce, r.Scope, r.Claims, a.AidantID, a.OrganisationID,
			m.UsagerID, m.ID, demarche, store.T(a.AuthTime), acr, store.T(now), store.T(now.Add(CodeTTL))); err != nil {
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
