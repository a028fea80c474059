// Package devidp owns the development identity providers of dev mode: real
// OpenID Connect providers, served over HTTP by the same process, that stand
// in for ProConnect (the aidants' provider) and FranceConnect (the person's
// provider).
//
// The service's relying-party code talks to them exactly as it talks to the
// real providers in production: discovery, authorization code flow with PKCE
// S256, state, nonce, signed ID tokens (ES256), userinfo and RP-initiated
// logout. Their "login" page only offers a list of fictional identities.
//
// A Provider keeps all its state in memory and generates a fresh signing key
// each time it is created. It MUST only be exposed on loopback, in dev mode
// or in tests; the caller enforces that.
package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Identity is a fictional person the provider's login page offers.
type Identity struct {
	Sub    string         // stable subject
	Label  string         // what the pick page shows, e.g. "Camille Martin — aidante, double authentification"
	Claims map[string]any // claims released by scope: each claim name is its own scope (email_verified comes with email)
	MFA    bool           // aidants provider: amr gets "mfa"
}

// Client is a relying party registered at the provider.
type Client struct {
	ID, Secret             string
	RedirectURIs           []string // exact match
	PostLogoutRedirectURIs []string // exact match
}

// TokenTweak lets a test make the provider misbehave (wrong nonce, expired
// token, alg none, other issuer...).
type TokenTweak struct {
	Claims map[string]any // ID token claims before signing; modify freely
	Alg    string         // "ES256" (default), "none" (unsigned "header.payload."), or "HS256" (HMAC with the client secret)
	// Raw, when set, is sent as the token as it is: what no signer makes
	// (another key under this provider's kid, a JWE, a million dots).
	Raw string
}

// Tweaks make the provider misbehave on purpose, for tests of a relying
// party's defences. The zero Tweaks is a well-behaved provider.
type Tweaks struct {
	// IDToken changes the ID token (Options.TweakIDToken).
	IDToken func(*TokenTweak)
	// Userinfo changes the userinfo answer: its Claims, and, when it sets
	// Alg or Raw, a JWT (application/jwt, as FranceConnect v2 answers)
	// instead of JSON. Alg starts empty; the claims are sent as they are,
	// so a tweak that signs adds iss and aud itself.
	Userinfo func(*TokenTweak)
	// Discovery changes the discovery document served.
	Discovery func(doc map[string]any)
	// JWKS replaces the key set served: the provider's set (JSON) in, what
	// to serve out.
	JWKS func(set []byte) []byte
	// Response changes the parameters of the authorization response
	// (code, state, iss) before the browser is sent back.
	Response func(q url.Values)
	// IgnorePKCE redeems codes without checking code_verifier.
	IgnorePKCE bool
}

// Kind says which real provider a Provider imitates.
type Kind int

// The two kinds of provider.
const (
	KindAidants       Kind = iota + 1 // ProConnect-like: aidants sign in
	KindFranceConnect                 // FranceConnect-like: the person identifies
)

func (k Kind) String() string {
	switch k {
	case KindAidants:
		return "aidants"
	case KindFranceConnect:
		return "franceconnect"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Options configure a Provider.
type Options struct {
	Issuer        string // absolute URL without trailing slash, e.g. "http://127.0.0.1:8080/dev/aidants"
	Title         string // shown on the pages, e.g. "ProConnect (développement)"
	Kind          Kind   // KindAidants or KindFranceConnect
	Identities    []Identity
	Clients       []Client
	Now           func() time.Time  // nil = time.Now
	TweakIDToken  func(*TokenTweak) // nil in normal use; tests set it
	StylesheetURL string            // optional <link rel=stylesheet> on the pages, e.g. "/static/aidants.css"
	// ACR is the acr of the ID tokens, whatever acr_values asked: the
	// provider authenticates one way only. Default "eidas1".
	ACR string
}

// Lifetimes of the provider's artefacts.
const (
	pendingTTL     = 10 * time.Minute // an authorization request waiting for a pick
	codeTTL        = 60 * time.Second // an authorization code
	accessTokenTTL = 5 * time.Minute  // an access token
	idTokenTTL     = 5 * time.Minute  // an ID token
)

// Provider is one development OpenID provider. It is safe for concurrent use.
type Provider struct {
	issuer        string
	basePath      string // issuer URL path, no trailing slash ("" at the root)
	title         string
	kind          Kind
	identities    []Identity
	bySub         map[string]int
	clients       map[string]Client
	now           func() time.Time
	stylesheetURL string
	acr           string

	key    *ecdsa.PrivateKey
	kid    string
	signer jose.Signer

	discovery []byte // precomputed discovery document
	jwks      []byte // precomputed public key set

	handler http.Handler

	tweakMu sync.Mutex
	tweaks  Tweaks

	st store
}

// New checks opts and returns a provider with a freshly generated ES256
// (P-256) signing key.
func New(opts Options) (*Provider, error) {
	basePath, err := checkIssuer(opts.Issuer)
	if err != nil {
		return nil, err
	}
	if opts.Kind != KindAidants && opts.Kind != KindFranceConnect {
		return nil, fmt.Errorf("devidp: unknown kind %d", int(opts.Kind))
	}
	p := &Provider{
		issuer:        opts.Issuer,
		basePath:      basePath,
		title:         opts.Title,
		kind:          opts.Kind,
		bySub:         make(map[string]int),
		clients:       make(map[string]Client),
		now:           opts.Now,
		stylesheetURL: opts.StylesheetURL,
		acr:           opts.ACR,
		tweaks:        Tweaks{IDToken: opts.TweakIDToken},
		st:            newStore(),
	}
	if p.acr == "" {
		p.acr = "eidas1"
	}
	if p.title == "" {
		p.title = defaultTitle(opts.Kind)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if err := p.addIdentities(opts.Identities); err != nil {
		return nil, err
	}
	if err := p.addClients(opts.Clients); err != nil {
		return nil, err
	}
	if err := p.newKey(); err != nil {
		return nil, err
	}
	if p.discovery, err = p.discoveryDocument(); err != nil {
		return nil, err
	}
	p.handler = p.routes()
	return p, nil
}

// Issuer returns the issuer URL, as it appears in discovery and ID tokens.
func (p *Provider) Issuer() string { return p.issuer }

// ServeHTTP serves every endpoint below the issuer's path. Requests arrive
// with their full path (the caller mounts the provider with
// mux.Handle("/dev/aidants/", p)); routing is on the path relative to the
// issuer URL's path.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.handler.ServeHTTP(w, r)
}

// SetTweak replaces Options.TweakIDToken (Tweaks.IDToken) and leaves the
// other tweaks as they are; nil restores normal ID tokens. It is safe to
// call while the provider serves requests.
func (p *Provider) SetTweak(f func(*TokenTweak)) {
	p.tweakMu.Lock()
	defer p.tweakMu.Unlock()
	p.tweaks.IDToken = f
}

// SetTweaks replaces every tweak; Tweaks{} restores a well-behaved
// provider. It is safe to call while the provider serves requests.
func (p *Provider) SetTweaks(t Tweaks) {
	p.tweakMu.Lock()
	defer p.tweakMu.Unlock()
	p.tweaks = t
}

func (p *Provider) currentTweaks() Tweaks {
	p.tweakMu.Lock()
	defer p.tweakMu.Unlock()
	return p.tweaks
}

// PublicKey returns the provider's public signing key, as its key set
// publishes it (with its kid): tests forge tokens that name it.
func (p *Provider) PublicKey() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: string(jose.ES256), Use: "sig"}
}

// SignJWT signs claims with the provider's key, as it signs ID tokens:
// tests make one provider's genuine token arrive where it must not.
func (p *Provider) SignJWT(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devidp: encode claims: %w", err)
	}
	jws, err := p.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devidp: sign: %w", err)
	}
	return jws.CompactSerialize()
}

func (p *Provider) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.serveDiscovery)
	mux.HandleFunc("GET /jwks", p.serveJWKS)
	mux.HandleFunc("GET /authorize", p.page(p.authorize))
	mux.HandleFunc("POST /authorize", p.page(p.pick))
	mux.HandleFunc("POST /token", p.api(p.token))
	mux.HandleFunc("GET /userinfo", p.api(p.userinfo))
	mux.HandleFunc("POST /userinfo", p.api(p.userinfo))
	mux.HandleFunc("GET /logout", p.page(p.logout))
	mux.HandleFunc("POST /logout", p.page(p.logout))
	if p.basePath == "" {
		return mux
	}
	return http.StripPrefix(p.basePath, mux)
}

// endpoint returns the absolute URL of an endpoint given its relative path.
func (p *Provider) endpoint(rel string) string { return p.issuer + rel }

func checkIssuer(issuer string) (basePath string, err error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return "", fmt.Errorf("devidp: issuer: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("devidp: issuer %q: scheme must be http or https", issuer)
	case u.Host == "":
		return "", fmt.Errorf("devidp: issuer %q: missing host", issuer)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return "", fmt.Errorf("devidp: issuer %q: no query, fragment or user info allowed", issuer)
	case strings.HasSuffix(issuer, "/"):
		return "", fmt.Errorf("devidp: issuer %q: no trailing slash allowed", issuer)
	case u.RawPath != "" || strings.ContainsAny(u.Path, "{}"):
		return "", fmt.Errorf("devidp: issuer %q: path must be plain", issuer)
	}
	return u.Path, nil
}

func defaultTitle(k Kind) string {
	if k == KindFranceConnect {
		return "FranceConnect (développement)"
	}
	return "ProConnect (développement)"
}

func (p *Provider) addIdentities(ids []Identity) error {
	if len(ids) == 0 {
		return errors.New("devidp: no identities")
	}
	for _, id := range ids {
		if id.Sub == "" {
			return fmt.Errorf("devidp: identity %q: empty sub", id.Label)
		}
		if _, dup := p.bySub[id.Sub]; dup {
			return fmt.Errorf("devidp: identity %q: duplicate sub", id.Sub)
		}
		if id.Label == "" {
			id.Label = id.Sub
		}
		claims := make(map[string]any, len(id.Claims))
		for k, v := range id.Claims {
			claims[k] = v
		}
		id.Claims = claims
		p.bySub[id.Sub] = len(p.identities)
		p.identities = append(p.identities, id)
	}
	return nil
}

func (p *Provider) addClients(clients []Client) error {
	for _, c := range clients {
		if c.ID == "" || c.Secret == "" {
			return fmt.Errorf("devidp: client %q: id and secret are required", c.ID)
		}
		if _, dup := p.clients[c.ID]; dup {
			return fmt.Errorf("devidp: client %q: duplicate id", c.ID)
		}
		for _, u := range append(append([]string(nil), c.RedirectURIs...), c.PostLogoutRedirectURIs...) {
			if err := checkClientURI(u); err != nil {
				return fmt.Errorf("devidp: client %q: %w", c.ID, err)
			}
		}
		c.RedirectURIs = append([]string(nil), c.RedirectURIs...)
		c.PostLogoutRedirectURIs = append([]string(nil), c.PostLogoutRedirectURIs...)
		p.clients[c.ID] = c
	}
	return nil
}

func checkClientURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("redirect uri: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("redirect uri %q: must be an absolute http(s) URL without fragment", raw)
	}
	return nil
}

func (p *Provider) newKey() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("devidp: generate key: %w", err)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("devidp: key thumbprint: %w", err)
	}
	p.key = key
	p.kid = b64(thumb)
	pub.KeyID = p.kid
	p.signer, err = jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: p.kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return fmt.Errorf("devidp: signer: %w", err)
	}
	p.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return fmt.Errorf("devidp: jwks: %w", err)
	}
	return nil
}

func (p *Provider) identity(sub string) (Identity, bool) {
	i, ok := p.bySub[sub]
	if !ok {
		return Identity{}, false
	}
	return p.identities[i], true
}
