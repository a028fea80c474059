package provider

import (
	"context"
	"crypto/subtle"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/internal/jwtverify"
	"aidants/mandate"
	"aidants/store"
)

// Client authentication methods at the token endpoint.
const (
	PrivateKeyJWT     = "private_key_jwt"
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
)

// Service is a public service registered as a client of the provider.
type Service struct {
	ID             string     `db:"id"`
	Name           string     `db:"name"`
	RedirectURIs   Lines      `db:"redirect_uris"`
	PostLogoutURIs Lines      `db:"post_logout_uris"`
	Demarches      store.List `db:"demarches"`
	AuthMethod     string     `db:"auth_method"`
	JWKS           string     `db:"jwks"`
	SecretHash     string     `db:"secret_hash"`
	IDTokenAlg     string     `db:"id_token_alg"`
	// UserinfoSigned answers userinfo as a JWT signed with IDTokenAlg
	// (application/jwt) rather than plain JSON.
	UserinfoSigned bool       `db:"userinfo_signed"`
	Active         bool       `db:"active"`
	CreatedAt      store.Time `db:"created_at"`
}

const serviceColumns = `id, name, redirect_uris, post_logout_uris, demarches, auth_method, COALESCE(jwks, '') AS jwks,
	COALESCE(secret_hash, '') AS secret_hash, id_token_alg, userinfo_signed, active, created_at`

// Serves tells whether the service serves démarche code.
func (s *Service) Serves(code string) bool { return slices.Contains(s.Demarches, code) }

// Lines is a list of URIs stored one per line.
type Lines []string

// Value implements driver.Valuer.
func (l Lines) Value() (driver.Value, error) { return strings.Join(l, "\n"), nil }

// Scan implements sql.Scanner.
func (l *Lines) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case string:
		s = v
	case []byte:
		s = string(v)
	case nil:
	default:
		return fmt.Errorf("provider: cannot scan %T into Lines", src)
	}
	*l = nil
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			*l = append(*l, line)
		}
	}
	return nil
}

// NewService is what an operator registers.
type NewService struct {
	Name           string
	RedirectURIs   []string
	PostLogoutURIs []string
	Demarches      []string
	AuthMethod     string // private_key_jwt (with JWKS), client_secret_basic or client_secret_post
	JWKS           string // JSON
	IDTokenAlg     string // ES256 (default) or RS256
	UserinfoSigned bool   // userinfo answers a JWT signed with IDTokenAlg
}

// InvalidError is a bad registration value; Msg says which and why.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// AddService registers a public service (service.registered) and returns
// it with, for a secret method, the secret — shown once, stored hashed.
func (p *Provider) AddService(ctx context.Context, actor audit.Actor, n NewService) (*Service, string, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, &InvalidError{fmt.Sprintf(format, args...)}) }
	name := strings.TrimSpace(n.Name)
	if name == "" || len(name) > 200 {
		bad("--name: give a name of 1 to 200 characters")
	}
	if len(n.RedirectURIs) == 0 {
		bad("--redirect-uri: at least one is required")
	}
	for _, u := range append(append([]string{}, n.RedirectURIs...), n.PostLogoutURIs...) {
		if err := checkRedirect(u); err != nil {
			bad("%s: %v", u, err)
		}
	}
	dem, err := mandate.ParseDemarches(n.Demarches)
	if err != nil {
		bad("--demarches: %v", err)
	} else if len(dem) == 0 {
		bad("--demarches: the service must serve at least one démarche")
	}
	if n.IDTokenAlg == "" {
		n.IDTokenAlg = "ES256"
	}
	if !slices.Contains(idTokenAlgs, n.IDTokenAlg) {
		bad("--id-token-alg: ES256 or RS256")
	}
	var secret string
	svc := &Service{ID: store.NewID("svc"), Name: name, RedirectURIs: n.RedirectURIs, PostLogoutURIs: n.PostLogoutURIs,
		Demarches: dem, AuthMethod: n.AuthMethod, IDTokenAlg: n.IDTokenAlg, UserinfoSigned: n.UserinfoSigned, Active: true}
	switch n.AuthMethod {
	case PrivateKeyJWT:
		if _, err := ParseClientJWKS(n.JWKS); err != nil {
			bad("--jwks: %v", err)
		}
		svc.JWKS = n.JWKS
	case ClientSecretBasic, ClientSecretPost:
		if n.JWKS != "" {
			bad("--jwks is only for private_key_jwt")
		}
		secret = store.RandomToken(32)
		svc.SecretHash = store.Hash(secret)
	default:
		bad("--auth: private_key_jwt, client_secret_basic or client_secret_post")
	}
	if len(errs) > 0 {
		return nil, "", errors.Join(errs...)
	}
	err = p.log.Write(ctx, func(tx *audit.Tx) error {
		svc.CreatedAt = store.T(tx.Now())
		var jwks, hash any
		if svc.JWKS != "" {
			jwks = svc.JWKS
		}
		if svc.SecretHash != "" {
			hash = svc.SecretHash
		}
		if _, err := tx.Exec(`INSERT INTO services (id, name, redirect_uris, post_logout_uris, demarches, auth_method, jwks, secret_hash,
			id_token_alg, userinfo_signed, active, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, svc.ID, svc.Name,
			svc.RedirectURIs, svc.PostLogoutURIs, svc.Demarches, svc.AuthMethod, jwks, hash, svc.IDTokenAlg, svc.UserinfoSigned,
			svc.Active, svc.CreatedAt); err != nil {
			return err
		}
		_, err := tx.Append(audit.Event{Type: audit.ServiceRegistered, Actor: actor, Service: svc.ID, Demarches: dem,
			Detail: map[string]any{"auth_method": svc.AuthMethod, "id_token_alg": svc.IDTokenAlg, "userinfo_signed": svc.UserinfoSigned,
				"redirect_uris": len(svc.RedirectURIs)}})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return svc, secret, nil
}

// checkRedirect accepts absolute https URIs (http only on loopback), with
// no fragment.
func checkRedirect(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil {
		return errors.New("not an absolute URI without fragment")
	}
	host := u.Hostname()
	loopback := host == "localhost" || host == "127.0.0.1" || host == "::1"
	if u.Scheme != "https" && !(u.Scheme == "http" && loopback) {
		return errors.New("https is required (http only on loopback)")
	}
	return nil
}

// ParseClientJWKS reads a client's public keys (a service's, an
// auditor's): at least one signing key, no private key.
func ParseClientJWKS(raw string) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(raw), &set); err != nil {
		return nil, fmt.Errorf("not a JWKS: %v", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("the JWKS holds no key")
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, errors.New("the JWKS holds a private key: give only the public part")
		}
		if !k.Valid() {
			return nil, errors.New("the JWKS holds an invalid key")
		}
	}
	return &set, nil
}

// Services lists the registered services.
func (p *Provider) Services(ctx context.Context) ([]Service, error) {
	var out []Service
	err := p.db.R.SelectContext(ctx, &out, `SELECT `+serviceColumns+` FROM services ORDER BY name`)
	return out, err
}

// serviceTTL is how long a service's registration is kept in memory: a
// change made by the command line in another process is seen after it.
const serviceTTL = 5 * time.Second

type cachedService struct {
	svc  Service
	jwks *jose.JSONWebKeySet // parsed, for private_key_jwt
	at   time.Time
}

// Service returns a registered, active service.
func (p *Provider) Service(ctx context.Context, id string) (*Service, error) {
	c, err := p.service(ctx, id)
	if err != nil {
		return nil, err
	}
	svc := c.svc
	return &svc, nil
}

func (p *Provider) service(ctx context.Context, id string) (*cachedService, error) {
	if id == "" {
		return nil, fmt.Errorf("service: %w", store.ErrNotFound)
	}
	if v, ok := p.services.Load(id); ok {
		if c := v.(*cachedService); time.Since(c.at) < serviceTTL {
			return c, nil
		}
	}
	var s Service
	err := p.db.R.GetContext(ctx, &s, p.db.Rebind(`SELECT `+serviceColumns+` FROM services WHERE id = ? AND active = ?`), id, true)
	if err != nil {
		return nil, store.NotFound(err, "service "+id)
	}
	c := &cachedService{svc: s, at: time.Now()}
	if s.AuthMethod == PrivateKeyJWT {
		c.jwks, _ = ParseClientJWKS(s.JWKS) // nil when unusable: refused at use
	}
	p.services.Store(id, c)
	return c, nil
}

// ServiceName names a service for people, "" when unknown or unreadable
// (a page then says "un service en ligne", which stays true).
func (p *Provider) ServiceName(ctx context.Context, id string) string {
	s, err := p.Service(ctx, id)
	if err != nil {
		return ""
	}
	return s.Name
}

// assertionAlgs are the algorithms a client may sign its assertion with.
var assertionAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256}

// maxAssertionLife bounds how far in the future a client assertion may
// expire: a long-lived assertion is a long-lived password.
const maxAssertionLife = 10 * time.Minute

// authenticate checks a token request's client authentication as the
// client registered it, and returns the client. A private_key_jwt
// assertion must be signed by one of the client's keys, for this token
// endpoint, unexpired, with a jti: the returned use is to be spent in the
// request's transaction (a jti seen before is refused there, and kept
// until the assertion expires).
func (p *Provider) authenticate(ctx context.Context, form url.Values, basicUser, basicPass string, hasBasic bool) (*Service, *assertionUse, error) {
	if a := form.Get("client_assertion"); a != "" || form.Get("client_assertion_type") != "" {
		if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || hasBasic {
			return nil, nil, errInvalidClient("unsupported client authentication")
		}
		return p.assertion(ctx, a, form.Get("client_id"))
	}
	id, secret := form.Get("client_id"), form.Get("client_secret")
	method := ClientSecretPost
	if hasBasic {
		if secret != "" {
			return nil, nil, errInvalidClient("two client authentications")
		}
		if id != "" && id != basicUser { // RFC 6749 allows client_id beside Basic: the same one
			return nil, nil, errInvalidClient("client_id differs from the Basic credentials'")
		}
		id, secret, method = basicUser, basicPass, ClientSecretBasic
	}
	svc, err := p.Service(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errInvalidClient("unknown client")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("provider: client %s: %w", id, err)
	}
	if svc.AuthMethod != method || svc.SecretHash == "" ||
		subtle.ConstantTimeCompare([]byte(store.Hash(secret)), []byte(svc.SecretHash)) != 1 {
		return nil, nil, errInvalidClient("client authentication failed")
	}
	return svc, nil, nil
}

// assertionClaims are the claims of a client assertion (RFC 7523 §3).
type assertionClaims struct {
	Iss string   `json:"iss"`
	Sub string   `json:"sub"`
	Aud audience `json:"aud"`
	Exp int64    `json:"exp"`
	Iat int64    `json:"iat"`
	Jti string   `json:"jti"`
}

// parseAssertion reads a client assertion, not yet verified.
func parseAssertion(raw, clientID string) (*jwtverify.Token, *assertionClaims, error) {
	tok, err := jwtverify.Parse(raw, assertionAlgs...)
	if err != nil {
		return nil, nil, errInvalidClient("client assertion: not a signed JWT with an accepted algorithm")
	}
	var c assertionClaims
	if err := tok.UnsafeClaims(&c); err != nil {
		return nil, nil, errInvalidClient("client assertion: unreadable claims")
	}
	if c.Iss == "" || c.Iss != c.Sub || (clientID != "" && clientID != c.Iss) {
		return nil, nil, errInvalidClient("client assertion: iss and sub must be the client_id")
	}
	return tok, &c, nil
}

// ClientAssertion authenticates a token request of a client that is not a
// public service (an auditor, for the client credentials grant) by
// private_key_jwt: keysOf returns the client's registered keys, an error
// wrapping store.ErrNotFound for an unknown client, or an *Error to refuse
// it; any other error of keysOf is the server's, not the client's. The
// assertion's jti is spent at once.
func (p *Provider) ClientAssertion(ctx context.Context, form url.Values, keysOf func(ctx context.Context, clientID string) (*jose.JSONWebKeySet, error)) (string, error) {
	if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || form.Get("client_assertion") == "" {
		return "", errInvalidClient("private_key_jwt client authentication is required")
	}
	tok, c, err := parseAssertion(form.Get("client_assertion"), form.Get("client_id"))
	if err != nil {
		return "", err
	}
	set, err := keysOf(ctx, c.Iss)
	var refused *Error
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", errInvalidClient("unknown client")
	case errors.As(err, &refused):
		return "", err
	case err != nil:
		return "", fmt.Errorf("provider: client %s: %w", c.Iss, err)
	case set == nil:
		return "", errInvalidClient("unknown client")
	}
	if err := p.checkAssertion(tok, set, c.Exp, c.Jti); err != nil {
		return "", err
	}
	use := &assertionUse{jti: c.Jti, client: c.Iss, expires: time.Unix(c.Exp, 0)}
	if err := p.log.Write(ctx, func(tx *audit.Tx) error { return p.spend(tx, use) }); err != nil {
		return "", err
	}
	return c.Iss, nil
}

func (p *Provider) assertion(ctx context.Context, raw, clientID string) (*Service, *assertionUse, error) {
	tok, c, err := parseAssertion(raw, clientID)
	if err != nil {
		return nil, nil, err
	}
	cached, err := p.service(ctx, c.Iss)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errInvalidClient("unknown client")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("provider: client %s: %w", c.Iss, err)
	}
	svc, set := cached.svc, cached.jwks
	if svc.AuthMethod != PrivateKeyJWT {
		return nil, nil, errInvalidClient("this client does not authenticate with private_key_jwt")
	}
	if set == nil {
		return nil, nil, errInvalidClient("the client's registered keys are unusable")
	}
	if err := p.checkAssertion(tok, set, c.Exp, c.Jti); err != nil {
		return nil, nil, err
	}
	return &svc, &assertionUse{jti: c.Jti, client: c.Iss, expires: time.Unix(c.Exp, 0)}, nil
}

// checkAssertion verifies a client assertion's signature with the
// client's keys, its audience (the token endpoint, or the issuer), its
// expiry, nbf and iat, and that it has a jti; the caller spends the jti.
func (p *Provider) checkAssertion(tok *jwtverify.Token, set *jose.JSONWebKeySet, exp int64, jti string) error {
	now := p.now()
	// The client signed with its own clock: a little skew is tolerated.
	_, _, err := tok.VerifySet(set, jwtverify.Expect{Audience: []string{p.issuer + "/oidc/token", p.issuer}, Now: now, Leeway: jwtverify.Leeway})
	switch {
	case errors.Is(err, jwtverify.ErrSignature):
		return errInvalidClient("client assertion: the signature does not verify with the client's keys")
	case errors.Is(err, jwtverify.ErrAudience):
		return errInvalidClient("client assertion: the audience must be the token endpoint")
	case errors.Is(err, jwtverify.ErrExpired):
		return errInvalidClient("client assertion: expired")
	case errors.Is(err, jwtverify.ErrNotYet):
		return errInvalidClient("client assertion: not valid yet (nbf or iat in the future)")
	case err != nil:
		return errInvalidClient("client assertion: " + err.Error())
	}
	if time.Unix(exp, 0).After(now.Add(maxAssertionLife)) {
		return errInvalidClient("client assertion: expires too far in the future")
	}
	if jti == "" || len(jti) > 200 {
		return errInvalidClient("client assertion: a jti is required")
	}
	return nil
}

// assertionUse is a verified client assertion, to be recorded in the
// transaction of the request it authenticates: its jti is then spent,
// whether the grant succeeds or not, and never accepted again.
type assertionUse struct {
	jti, client string
	expires     time.Time
}

// spend records the assertion's jti (a replay is invalid_client) and
// purges what has expired.
func (p *Provider) spend(tx *audit.Tx, u *assertionUse) error {
	if u == nil {
		return nil
	}
	if err := p.purge(tx); err != nil {
		return err
	}
	_, err := tx.Exec(`INSERT INTO client_assertions (jti, client_id, expires_at) VALUES (?, ?, ?)`, u.jti, u.client, store.T(u.expires))
	if store.IsConflict(err) {
		return errInvalidClient("client assertion: already used (jti)")
	}
	return err
}

// audience is a JWT aud: one string or several.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// SetRedirects replaces a service's redirect and post-logout URIs
// (service.updated).
func (p *Provider) SetRedirects(ctx context.Context, actor audit.Actor, id string, redirects, postLogout []string) error {
	if len(redirects) == 0 {
		return &InvalidError{"at least one redirect URI is required"}
	}
	for _, u := range append(append([]string{}, redirects...), postLogout...) {
		if err := checkRedirect(u); err != nil {
			return &InvalidError{fmt.Sprintf("%s: %v", u, err)}
		}
	}
	// Forget the registration before and after the change, so that no
	// reader keeps the old one past the commit.
	p.services.Delete(id)
	defer p.services.Delete(id)
	return p.log.Write(ctx, func(tx *audit.Tx) error {
		res, err := tx.Exec(`UPDATE services SET redirect_uris = ?, post_logout_uris = ? WHERE id = ?`, Lines(redirects), Lines(postLogout), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("service %s: %w", id, store.ErrNotFound)
		}
		_, err = tx.Append(audit.Event{Type: audit.ServiceUpdated, Actor: actor, Service: id, Detail: map[string]any{"redirect_uris": len(redirects)}})
		return err
	})
}

// ServiceUpdate is a change of a registered service's settings; a nil
// field stays as it is.
type ServiceUpdate struct {
	Name           *string
	Demarches      *[]string
	IDTokenAlg     *string
	UserinfoSigned *bool
}

// UpdateService changes a service's settings (service.updated, naming
// what changed) and returns the service as it now is. Every bad value is
// reported at once, as *InvalidError, and then nothing changes; an
// unknown id wraps store.ErrNotFound.
func (p *Provider) UpdateService(ctx context.Context, actor audit.Actor, id string, u ServiceUpdate) (*Service, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, &InvalidError{fmt.Sprintf(format, args...)}) }
	var name string
	if u.Name != nil {
		if name = strings.TrimSpace(*u.Name); name == "" || len(name) > 200 {
			bad("--name: give a name of 1 to 200 characters")
		}
	}
	var dem []string
	if u.Demarches != nil {
		var err error
		if dem, err = mandate.ParseDemarches(*u.Demarches); err != nil {
			bad("--demarches: %v", err)
		} else if len(dem) == 0 {
			bad("--demarches: the service must serve at least one démarche")
		}
	}
	if u.IDTokenAlg != nil && !slices.Contains(idTokenAlgs, *u.IDTokenAlg) {
		bad("--id-token-alg: ES256 or RS256")
	}
	if u.Name == nil && u.Demarches == nil && u.IDTokenAlg == nil && u.UserinfoSigned == nil {
		bad("nothing to change: give --name, --demarches, --id-token-alg or --userinfo-signed")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Forget the registration before and after the change, so that no
	// reader keeps the old one past the commit.
	p.services.Delete(id)
	defer p.services.Delete(id)
	var svc Service
	err := p.log.Write(ctx, func(tx *audit.Tx) error {
		if err := tx.Get(&svc, `SELECT `+serviceColumns+` FROM services WHERE id = ?`, id); err != nil {
			return store.NotFound(err, "service "+id)
		}
		var changed []string
		if u.Name != nil && name != svc.Name {
			svc.Name, changed = name, append(changed, "name")
		}
		if u.Demarches != nil && !slices.Equal(dem, []string(svc.Demarches)) {
			svc.Demarches, changed = dem, append(changed, "demarches")
		}
		if u.IDTokenAlg != nil && *u.IDTokenAlg != svc.IDTokenAlg {
			svc.IDTokenAlg, changed = *u.IDTokenAlg, append(changed, "id_token_alg")
		}
		if u.UserinfoSigned != nil && *u.UserinfoSigned != svc.UserinfoSigned {
			svc.UserinfoSigned, changed = *u.UserinfoSigned, append(changed, "userinfo_signed")
		}
		if len(changed) == 0 {
			return nil // what was asked is what is: nothing to journal
		}
		if _, err := tx.Exec(`UPDATE services SET name = ?, demarches = ?, id_token_alg = ?, userinfo_signed = ? WHERE id = ?`,
			svc.Name, svc.Demarches, svc.IDTokenAlg, svc.UserinfoSigned, id); err != nil {
			return err
		}
		_, err := tx.Append(audit.Event{Type: audit.ServiceUpdated, Actor: actor, Service: id, Demarches: svc.Demarches,
			Detail: map[string]any{"changed": changed, "id_token_alg": svc.IDTokenAlg, "userinfo_signed": svc.UserinfoSigned}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &svc, nil
}
