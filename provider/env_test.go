package provider_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/keys"
	"aidants/mandate"
	"aidants/org"
	"aidants/provider"
	"aidants/store"
	"aidants/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// clock is the test clock shared by the log, the keys, the mandates and
// the provider: an offset added to the real time.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time      { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) add(d time.Duration) { c.off.Add(int64(d)) }

const (
	fcIssuer  = "https://franceconnect.test.invalid"
	personSub = "fc-josephine"
	// scope is what the services ask for, unless a test says otherwise.
	scope     = "openid given_name family_name birthdate"
	jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// testBinding is the binding secret of the aidant's browser.
	testBinding = "the-binding-secret-of-the-aidants-browser"
)

var operator = audit.Actor{Kind: audit.ActorOperator, ID: "test"}

// client is a registered service and what it authenticates with.
type client struct {
	svc      *provider.Service
	secret   string            // client_secret_basic, client_secret_post
	key      *ecdsa.PrivateKey // private_key_jwt, published as kid "k1"
	redirect string
	logout   string // its post-logout URI
}

// env is a provider serving over HTTP on a real database, with two
// organisations, their aidants, an active mandate in each for the same
// person, and registered services.
type env struct {
	t        *testing.T
	ctx      context.Context
	db       *store.DB
	log      *audit.Log
	clock    *clock
	keys     *keys.Manager
	mandates *mandate.Service
	p        *provider.Provider
	srv      *httptest.Server
	issuer   string
	fcKey    *ecdsa.PrivateKey

	orgA, orgB *org.Organisation
	// a made the mandate of organisation A; a2, another aidant of A, is the
	// one who acts in the flows; b is an aidant of B.
	a, a2, b mandate.Actor
	authTime time.Time
	// mA: A's mandate for the person (argent, social); mB: B's (argent).
	mA, mB *mandate.Mandate

	jwt      *client // private_key_jwt, serves argent, social, logement
	basic    *client // client_secret_basic, same démarches
	post     *client // client_secret_post, same démarches
	rsa      *client // client_secret_basic, ID tokens in RS256
	logement *client // client_secret_post, serves logement only
}

func newEnv(t *testing.T, db *store.DB) *env {
	t.Helper()
	ctx := t.Context()
	c := &clock{}
	skey, err := audit.GenerateKey("test.invalid/audit")
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(ctx, db, audit.Options{SigningKey: skey, Now: c.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	km, err := keys.Open(ctx, l, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	// The issuer is the server's URL: take it from the listener before the
	// server starts, so that the handler is in place before any request.
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	e := &env{t: t, ctx: ctx, db: db, log: l, clock: c, keys: km, srv: srv, issuer: issuer,
		mandates: mandate.New(mandate.Config{Issuer: "https://aidants.test.invalid"}, l, km)}
	e.p, err = provider.New(provider.Config{Issuer: issuer, PairwiseSecret: []byte("a pairwise secret of at least 32 bytes!"),
		AccessTokenTTL: 5 * time.Minute, IDTokenTTL: 5 * time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, l, km, e.mandates)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", e.p.Handler())
	mux.HandleFunc("GET /oidc/jwks", func(w http.ResponseWriter, r *http.Request) {
		set, err := km.JWKS(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		json.NewEncoder(w).Encode(set)
	})
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)

	dir := org.New(l)
	aidants := []struct {
		org                  int
		email, given, family string
		to                   *mandate.Actor
	}{
		{0, "camille@example.org", "Camille", "Martin", &e.a},
		{0, "dominique@example.org", "Dominique", "Bernard", &e.a2},
		{1, "alex@example.org", "Alex", "Petit", &e.b},
	}
	var orgs []*org.Organisation
	for _, o := range []struct{ name, siret string }{{"Maison France services A", "98765432100015"}, {"Mairie B", "13579246800013"}} {
		created, err := dir.AddOrganisation(ctx, operator, org.NewOrganisation{Name: o.name, SIRET: o.siret})
		if err != nil {
			t.Fatal(err)
		}
		orgs = append(orgs, created)
	}
	e.orgA, e.orgB = orgs[0], orgs[1]
	for _, a := range aidants {
		created, err := dir.AddAidant(ctx, operator, org.NewAidant{OrganisationID: orgs[a.org].ID, Email: a.email,
			GivenName: a.given, FamilyName: a.family, HabilitatedUntil: "2099-12-31", Aidant: true})
		if err != nil {
			t.Fatal(err)
		}
		*a.to = mandate.Actor{AidantID: created.ID, OrganisationID: orgs[a.org].ID}
	}
	e.authTime = c.now().Add(-2 * time.Minute).Truncate(time.Second)
	e.fcKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.mA = e.onSite(e.a, personSub, "argent", "social")
	e.mB = e.onSite(e.b, personSub, "argent")

	e.jwt = e.addClient("service-a", provider.PrivateKeyJWT, "", "argent", "social", "logement")
	e.basic = e.addClient("service-b", provider.ClientSecretBasic, "", "argent", "social", "logement")
	e.post = e.addClient("service-c", provider.ClientSecretPost, "", "argent", "social", "logement")
	e.rsa = e.addClient("service-d", provider.ClientSecretBasic, "RS256", "argent", "social")
	e.logement = e.addClient("service-e", provider.ClientSecretPost, "", "logement")
	return e
}

// evidence is a FranceConnect authentication of person sub, signed by the
// test FranceConnect key, carrying nonce.
func (e *env) evidence(sub, nonce string) mandate.Evidence {
	e.t.Helper()
	claims := map[string]any{"iss": fcIssuer, "sub": sub, "aud": "aidants", "nonce": nonce, "acr": "eidas1",
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(),
		"given_name": "Joséphine Marie", "family_name": "Lefèvre", "birthdate": "1948-03-12", "gender": "female",
		"birthplace": "44109", "birthcountry": "99100", "email": "josephine.lefevre@example.org"}
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: e.fcKey, KeyID: "fc1"}}, nil)
	payload, _ := json.Marshal(claims)
	obj, _ := signer.Sign(payload)
	raw, _ := obj.CompactSerialize()
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: &e.fcKey.PublicKey, KeyID: "fc1", Algorithm: "ES256", Use: "sig"})
	return mandate.Evidence{Issuer: fcIssuer, Subject: sub, Nonce: nonce, Claims: claims, RawIDToken: raw, JWK: string(jwk)}
}

// onSite makes an active on-site mandate of one month for person sub.
func (e *env) onSite(a mandate.Actor, sub string, dem ...string) *mandate.Mandate {
	e.t.Helper()
	d, _, err := e.mandates.CreateDraft(e.ctx, a, mandate.NewDraft{Demarches: dem, Duration: "1m", Method: mandate.OnSite})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.mandates.Identify(e.ctx, d.ID, "", e.evidence(sub, d.Nonce())); err != nil {
		e.t.Fatal(err)
	}
	m, err := e.mandates.ConfirmOnSite(e.ctx, a, d.ID, true, true)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// revoke withdraws démarche dem of m ("" for the whole mandate), as the
// aidant who made it.
func (e *env) revoke(m *mandate.Mandate, dem string) {
	e.t.Helper()
	err := e.mandates.Revoke(e.ctx, mandate.Revocation{By: audit.Actor{Kind: audit.ActorAidant, ID: e.a.AidantID},
		OrganisationID: m.OrganisationID, MandateID: m.ID, Demarche: dem, Reason: "demande_personne"})
	if err != nil {
		e.t.Fatal(err)
	}
}

// addClient registers a service named name, reachable at
// https://name.test.invalid.
func (e *env) addClient(name, method, alg string, dem ...string) *client {
	e.t.Helper()
	c := &client{redirect: "https://" + name + ".test.invalid/callback", logout: "https://" + name + ".test.invalid/au-revoir"}
	n := provider.NewService{Name: name, RedirectURIs: []string{c.redirect}, PostLogoutURIs: []string{c.logout},
		Demarches: dem, AuthMethod: method, IDTokenAlg: alg}
	if method == provider.PrivateKeyJWT {
		c.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &c.key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}
		b, _ := json.Marshal(set)
		n.JWKS = string(b)
	}
	svc, secret, err := e.p.AddService(e.ctx, operator, n)
	if err != nil {
		e.t.Fatal(err)
	}
	c.svc, c.secret = svc, secret
	return c
}

// acting is aidant a choosing, signed in at e.authTime.
func (e *env) acting(a mandate.Actor) provider.Acting {
	return provider.Acting{AidantID: a.AidantID, OrganisationID: a.OrganisationID, AuthTime: e.authTime}
}

func random() string { return store.RandomToken(16) }

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// flow is one authorization code flow of a client.
type flow struct {
	c                      *client
	verifier, state, nonce string
	request                string // names the saved request in the aidant's pages
	code                   string
}

// params is a valid authorization request of client c.
func (e *env) params(c *client) (url.Values, *flow) {
	f := &flow{c: c, verifier: store.RandomToken(32), state: random(), nonce: random()}
	return url.Values{"client_id": {c.svc.ID}, "redirect_uri": {c.redirect}, "response_type": {"code"}, "scope": {scope},
		"state": {f.state}, "nonce": {f.nonce}, "code_challenge": {challengeOf(f.verifier)}, "code_challenge_method": {"S256"}}, f
}

// begin validates and saves an authorization request of c, edited by edit.
func (e *env) begin(c *client, edit func(url.Values)) *flow {
	e.t.Helper()
	q, f := e.params(c)
	if edit != nil {
		edit(q)
	}
	r, svc, err := e.p.Authorize(e.ctx, q)
	if err != nil {
		e.t.Fatalf("authorize: %v", err)
	}
	if svc.ID != c.svc.ID {
		e.t.Fatalf("authorize answered for service %s, want %s", svc.ID, c.svc.ID)
	}
	if f.request, err = e.p.Seal(r, testBinding); err != nil {
		e.t.Fatal(err)
	}
	return f
}

// issue answers f's request with a code for mandate m and démarche dem,
// chosen by aidant a, and checks where the browser goes.
func (e *env) issue(f *flow, a mandate.Actor, m *mandate.Mandate, dem string) {
	e.t.Helper()
	target, err := e.p.IssueCode(e.ctx, e.acting(a), f.request, testBinding, m.ID, dem)
	if err != nil {
		e.t.Fatalf("issue code: %v", err)
	}
	u, err := url.Parse(target)
	if err != nil {
		e.t.Fatal(err)
	}
	q := u.Query()
	if base := strings.TrimSuffix(target, "?"+u.RawQuery); base != f.c.redirect {
		e.t.Fatalf("the code goes to %s, want %s", base, f.c.redirect)
	}
	if q.Get("state") != f.state || q.Get("iss") != e.issuer {
		e.t.Fatalf("the code's redirect carries state %q and iss %q, want %q and %q", q.Get("state"), q.Get("iss"), f.state, e.issuer)
	}
	f.code = q.Get("code")
	if raw, err := base64.RawURLEncoding.DecodeString(f.code); err != nil || len(raw) < 16 {
		e.t.Fatalf("code %q is not 128 random bits or more", f.code)
	}
}

// code runs a flow of c up to the code: aidant a2 of A acts with A's
// mandate for argent.
func (e *env) code(c *client) *flow {
	e.t.Helper()
	f := e.begin(c, nil)
	e.issue(f, e.a2, e.mA, "argent")
	return f
}

// response is an answer of the token or userinfo endpoint.
type response struct {
	status int
	header http.Header
	body   map[string]any
}

func (r response) str(name string) string { s, _ := r.body[name].(string); return s }

func (e *env) do(req *http.Request) response {
	e.t.Helper()
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	out := response{status: res.StatusCode, header: res.Header}
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &out.body); err != nil {
		e.t.Fatalf("%s %s: %d, not JSON: %q", req.Method, req.URL.Path, res.StatusCode, b)
	}
	return out
}

// postToken posts form to the token endpoint, with HTTP Basic
// authentication when user is not empty.
func (e *env) postToken(form url.Values, user, pass string) response {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.issuer+"/oidc/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return e.do(req)
}

// assertion is a private_key_jwt client assertion of c signed by key (c's
// own when nil), edited by edit.
func (e *env) assertion(c *client, key *ecdsa.PrivateKey, edit func(map[string]any)) string {
	e.t.Helper()
	if key == nil {
		key = c.key
	}
	now := e.clock.now()
	claims := map[string]any{"iss": c.svc.ID, "sub": c.svc.ID, "aud": e.issuer + "/oidc/token", "iat": now.Unix(),
		"exp": now.Add(2 * time.Minute).Unix(), "jti": random()}
	if edit != nil {
		edit(claims)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		e.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		e.t.Fatal(err)
	}
	raw, _ := obj.CompactSerialize()
	return raw
}

// authenticate adds c's client authentication, as registered, to form and
// returns the Basic credentials to send, if any.
func (e *env) authenticate(c *client, form url.Values) (user, pass string) {
	switch c.svc.AuthMethod {
	case provider.PrivateKeyJWT:
		form.Set("client_assertion_type", jwtBearer)
		form.Set("client_assertion", e.assertion(c, nil, nil))
	case provider.ClientSecretPost:
		form.Set("client_id", c.svc.ID)
		form.Set("client_secret", c.secret)
	case provider.ClientSecretBasic:
		return c.svc.ID, c.secret
	}
	return "", ""
}

// form is f's token request, without client authentication.
func (f *flow) form() url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {f.code}, "redirect_uri": {f.c.redirect},
		"code_verifier": {f.verifier}}
}

// redeem exchanges f's code as its client, with edit applied to the form.
func (e *env) redeem(f *flow, edit func(url.Values)) response {
	e.t.Helper()
	form := f.form()
	if edit != nil {
		edit(form)
	}
	user, pass := e.authenticate(f.c, form)
	return e.postToken(form, user, pass)
}

// tokens redeems f's code and returns the ID and access tokens.
func (e *env) tokens(f *flow) (idToken, accessToken string) {
	e.t.Helper()
	r := e.redeem(f, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("token: %d %v", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		e.t.Errorf("token response Cache-Control = %q, want no-store", r.header.Get("Cache-Control"))
	}
	if r.str("token_type") != "Bearer" || r.body["refresh_token"] != nil {
		e.t.Errorf("token response = %v", r.body)
	}
	return r.str("id_token"), r.str("access_token")
}

// userinfo calls the userinfo endpoint with the Bearer token (none when
// empty), the request edited by edit.
func (e *env) userinfo(token string, edit func(*http.Request)) response {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodGet, e.issuer+"/oidc/userinfo", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if edit != nil {
		edit(req)
	}
	return e.do(req)
}

// wantError checks an OAuth error answer: status, error code, JSON, and
// no caching.
func wantError(t *testing.T, what string, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Errorf("%s: %d %v, want %d %s", what, r.status, r.body, status, code)
		return
	}
	if r.header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("%s: Cache-Control %q, Content-Type %q", what, r.header.Get("Cache-Control"), r.header.Get("Content-Type"))
	}
	if status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("%s: 401 without WWW-Authenticate", what)
	}
}

// verifier is a go-oidc verifier of c's ID tokens, through discovery on
// the issuer (a fresh key cache each time).
func (e *env) verifier(c *client) *oidc.IDTokenVerifier {
	e.t.Helper()
	op, err := oidc.NewProvider(e.ctx, e.issuer)
	if err != nil {
		e.t.Fatal(err)
	}
	return op.Verifier(&oidc.Config{ClientID: c.svc.ID, SupportedSigningAlgs: []string{oidc.ES256, oidc.RS256}, Now: e.clock.now})
}

// verify verifies an ID token of c with go-oidc and returns its claims.
func (e *env) verify(c *client, raw string) map[string]any {
	e.t.Helper()
	tok, err := e.verifier(c).Verify(e.ctx, raw)
	if err != nil {
		e.t.Fatalf("go-oidc refuses the ID token: %v", err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		e.t.Fatal(err)
	}
	return claims
}

// header returns the protected header of a compact JWS.
func header(t *testing.T, raw string) jose.Header {
	t.Helper()
	tok, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatalf("not a JWS: %v", err)
	}
	return tok.Signatures[0].Protected
}

// payload returns the claims of a compact JWS, unverified.
func payload(t *testing.T, raw string) map[string]any {
	t.Helper()
	tok, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatalf("not a JWS: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(tok.UnsafePayloadWithoutVerification(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) count(q string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.R.Get(&n, e.db.Rebind(q), args...); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) events(typ string) int {
	return e.count(`SELECT COUNT(*) FROM audit_events WHERE type = ?`, typ)
}

// bodies returns the canonical bodies of the events of type typ ("" for
// all), in order.
func (e *env) bodies(typ string) []string {
	e.t.Helper()
	q, args := `SELECT body FROM audit_events ORDER BY idx`, []any{}
	if typ != "" {
		q, args = `SELECT body FROM audit_events WHERE type = ? ORDER BY idx`, []any{typ}
	}
	var raw [][]byte
	if err := e.db.R.Select(&raw, e.db.Rebind(q), args...); err != nil {
		e.t.Fatal(err)
	}
	out := make([]string, len(raw))
	for i, b := range raw {
		out[i] = string(b)
	}
	return out
}

func readCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// equalJSON tells whether a and b have the same JSON form.
func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// each runs f on a fresh environment on SQLite and on PostgreSQL.
func each(t *testing.T, f func(t *testing.T, e *env)) {
	t.Helper()
	storetest.Each(t, func(t *testing.T, db *store.DB) { f(t, newEnv(t, db)) })
}
