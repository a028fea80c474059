package devidp

import (
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const (
	testSIRET    = "13002526500013"
	testClientID = "aidants-test"
	testSecret   = "dev-client-secret-for-tests"
)

// clock is a controllable Options.Now. It starts at the real time so that
// go-oidc, which uses the real clock, accepts the tokens.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one provider mounted like the service mounts it, behind a real
// HTTP server, with a relying party built from go-oidc and oauth2.
type env struct {
	t        *testing.T
	srv      *httptest.Server
	idp      *Provider
	clock    *clock
	browser  *http.Client // does not follow redirects
	rp       *oidc.Provider
	callback string
	loggedIn string // registered post-logout redirect URI
}

func newEnv(t *testing.T, kind Kind) *env {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	path, ids := "/dev/aidants", AidantIdentities(testSIRET)
	if kind == KindFranceConnect {
		path, ids = "/dev/franceconnect", UsagerIdentities()
	}
	e := &env{
		t:        t,
		srv:      srv,
		clock:    &clock{t: time.Now()},
		callback: srv.URL + "/auth/callback",
		loggedIn: srv.URL + "/au-revoir",
		browser: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
	idp, err := New(Options{
		Issuer:     srv.URL + path,
		Title:      "Fournisseur de test",
		Kind:       kind,
		Identities: ids,
		Clients: []Client{{
			ID:                     testClientID,
			Secret:                 testSecret,
			RedirectURIs:           []string{e.callback},
			PostLogoutRedirectURIs: []string{e.loggedIn},
		}},
		Now:           e.clock.Now,
		StylesheetURL: "/static/aidants.css",
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux.Handle(path+"/", idp)
	e.idp = idp

	e.rp, err = oidc.NewProvider(t.Context(), idp.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return e
}

func (e *env) config(scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     testClientID,
		ClientSecret: testSecret,
		Endpoint:     e.rp.Endpoint(),
		RedirectURL:  e.callback,
		Scopes:       scopes,
	}
}

// verifier takes its algorithm allow-list from the discovery document.
func (e *env) verifier() *oidc.IDTokenVerifier {
	return e.rp.Verifier(&oidc.Config{ClientID: testClientID})
}

// attempt is one authorization request as the relying party makes it.
type attempt struct {
	state, nonce, verifier string
	authURL                string
}

func (e *env) newAttempt(cfg *oauth2.Config, opts ...oauth2.AuthCodeOption) attempt {
	a := attempt{state: oauth2.GenerateVerifier(), nonce: oauth2.GenerateVerifier(), verifier: oauth2.GenerateVerifier()}
	opts = append(opts, oidc.Nonce(a.nonce), oauth2.S256ChallengeOption(a.verifier))
	a.authURL = cfg.AuthCodeURL(a.state, opts...)
	return a
}

// pickForm is what the browser finds on the identity picker.
type pickForm struct {
	action    string
	requestID string
	labels    map[string]string // sub → label
	body      string
}

var (
	formActionRE = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	requestIDRE  = regexp.MustCompile(`name="request" value="([^"]+)"`)
	identityRE   = regexp.MustCompile(`name="identity" value="([^"]+)">([^<]+)</button>`)
)

// openPicker plays the browser: it GETs the authorization URL and reads the
// picker's form.
func (e *env) openPicker(authURL string) pickForm {
	e.t.Helper()
	resp, body := e.get(authURL)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("authorize: status %d, Location %q, body %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	f := pickForm{labels: map[string]string{}, body: html.UnescapeString(body)}
	if m := formActionRE.FindStringSubmatch(body); m != nil {
		f.action = html.UnescapeString(m[1])
	}
	if m := requestIDRE.FindStringSubmatch(body); m != nil {
		f.requestID = html.UnescapeString(m[1])
	}
	for _, m := range identityRE.FindAllStringSubmatch(body, -1) {
		f.labels[html.UnescapeString(m[1])] = html.UnescapeString(m[2])
	}
	if f.action == "" || f.requestID == "" || len(f.labels) == 0 {
		e.t.Fatalf("picker form not found in:\n%s", body)
	}
	return f
}

// submit posts the picker's form with extra fields and returns the response.
func (e *env) submit(f pickForm, fields url.Values) *http.Response {
	e.t.Helper()
	fields.Set("request", f.requestID)
	resp, err := e.browser.PostForm(e.srv.URL+f.action, fields)
	if err != nil {
		e.t.Fatalf("post picker: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// login runs the browser's part of a login as sub and returns the code,
// after checking the redirect's state and iss.
func (e *env) login(a attempt, sub string) string {
	e.t.Helper()
	f := e.openPicker(a.authURL)
	resp := e.submit(f, url.Values{"identity": {sub}})
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("pick: status %d, want 303", resp.StatusCode)
	}
	loc := e.location(resp)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != e.callback {
		e.t.Fatalf("redirected to %q, want %q", got, e.callback)
	}
	q := loc.Query()
	if q.Get("state") != a.state {
		e.t.Fatalf("state = %q, want %q", q.Get("state"), a.state)
	}
	if q.Get("iss") != e.idp.Issuer() {
		e.t.Fatalf("iss = %q, want %q", q.Get("iss"), e.idp.Issuer())
	}
	if q.Get("code") == "" {
		e.t.Fatalf("no code in %s", loc)
	}
	return q.Get("code")
}

func (e *env) exchange(cfg *oauth2.Config, code, verifier string) (*oauth2.Token, error) {
	return cfg.Exchange(e.t.Context(), code, oauth2.VerifierOption(verifier))
}

// mustExchange exchanges a code and verifies the ID token with go-oidc.
func (e *env) mustExchange(cfg *oauth2.Config, a attempt, code string) (*oauth2.Token, *oidc.IDToken, string) {
	e.t.Helper()
	tok, err := e.exchange(cfg, code, a.verifier)
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := e.verifier().Verify(e.t.Context(), raw)
	if err != nil {
		e.t.Fatalf("verify id token: %v", err)
	}
	return tok, idt, raw
}

func (e *env) get(u string) (*http.Response, string) {
	e.t.Helper()
	resp, err := e.browser.Get(u)
	if err != nil {
		e.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

func (e *env) location(resp *http.Response) *url.URL {
	e.t.Helper()
	loc, err := resp.Location()
	if err != nil {
		e.t.Fatalf("no Location (status %d): %v", resp.StatusCode, err)
	}
	return loc
}

// withParams returns authURL with some query parameters replaced (or
// removed, when the value is empty).
func withParams(t *testing.T, authURL string, params map[string]string) string {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range params {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// retrieveError returns the OAuth error of a failed exchange.
func retrieveError(t *testing.T, err error) (code string, status int) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not an oauth2.RetrieveError", err)
	}
	return re.ErrorCode, re.Response.StatusCode
}

func userinfoRequest(t *testing.T, ctx context.Context, method, target, bearer string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
