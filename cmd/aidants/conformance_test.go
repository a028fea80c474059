package main

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// authorizeURL is an authorization request of svc, with extra
// parameters.
func authorizeURL(s *testServer, svc *service, extra url.Values) string {
	q := url.Values{"client_id": {svc.clientID}, "redirect_uri": {svc.redirect}, "response_type": {"code"}, "scope": {"openid"},
		"state": {"etat"}, "nonce": {"n"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	for k, v := range extra {
		q[k] = v
	}
	return s.URL + "/oidc/authorize?" + q.Encode()
}

// noFollow is c, stopping at each redirect.
func noFollow(c *http.Client) *http.Client {
	n := *c
	n.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &n
}

// step does one request and returns the status, the Location and the body.
func step(t *testing.T, c *http.Client, method, u string, form url.Values) (int, string, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// TestPromptNoneIsAnsweredAtOnce: a request that may show nothing gets
// login_required without a signed-in aidant, or with one whose
// authentication is too old for it, and interaction_required otherwise —
// the aidant must always choose; nothing waits on the server.
func TestPromptNoneIsAnsweredAtOnce(t *testing.T) {
	in := newInterop(t)
	svc := in.register("silencieux", "client_secret_basic")
	stranger := noFollow(browser(t))
	cases := []struct {
		name  string
		c     *http.Client
		extra url.Values
		want  string
	}{
		{"no aidant signed in", stranger, url.Values{"prompt": {"none"}}, "login_required"},
		{"an aidant signed in", noFollow(in.c), url.Values{"prompt": {"none"}}, "interaction_required"},
		{"an aidant whose authentication is older than max_age", noFollow(in.c), url.Values{"prompt": {"none"}, "max_age": {"0"}}, "login_required"},
	}
	for _, c := range cases {
		status, loc, _ := step(t, c.c, http.MethodGet, authorizeURL(in.s, svc, c.extra), nil)
		u, _ := url.Parse(loc)
		if status != http.StatusSeeOther || !strings.HasPrefix(loc, svc.redirect+"?") || u.Query().Get("error") != c.want ||
			u.Query().Get("state") != "etat" || u.Query().Get("iss") != in.s.URL {
			t.Errorf("%s: %d, Location %q; want %s at the service", c.name, status, loc, c.want)
		}
	}
	if n := count(t, openDB(t, in.s), `SELECT COUNT(*) FROM spent_requests WHERE kind = 'authorization'`); n != 0 {
		t.Errorf("%d requests were recorded on the server", n)
	}
}

// TestAStaleReauthenticationShowsAPageInsteadOfLooping: with prompt=login
// the chooser sends the aidant to authenticate again; if the way back says
// that happened and the session's authentication is still too old (an
// identity provider that ignored prompt=login), the aidant gets a page, not
// another round. A choice posted without the new authentication gets no
// code and is no tampering.
func TestAStaleReauthenticationShowsAPageInsteadOfLooping(t *testing.T) {
	in := newInterop(t)
	svc := in.register("exigeant", "client_secret_basic")
	c := noFollow(in.c)
	status, loc, _ := step(t, c, http.MethodGet, authorizeURL(in.s, svc, url.Values{"prompt": {"login"}}), nil)
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/agir?demande=") {
		t.Fatalf("authorize: %d %s", status, loc)
	}
	chooser := in.s.URL + loc
	token, _ := url.Parse(loc)
	status, loc, _ = step(t, c, http.MethodGet, chooser, nil)
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/connexion/aidant/reauthentification?retour=") ||
		!strings.Contains(loc, url.QueryEscape("reauthentifie=1")) {
		t.Fatalf("the chooser before a new authentication: %d %s", status, loc)
	}
	status, loc, body := step(t, c, http.MethodGet, chooser+"&reauthentifie=1", nil)
	if status != http.StatusForbidden || loc != "" || !strings.Contains(html.UnescapeString(body), "votre fournisseur d'identité ne l'a pas fait") {
		t.Fatalf("back without a new authentication: %d %s\n%s", status, loc, body)
	}
	db := openDB(t, in.s)
	denied := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`)
	status, loc, _ = step(t, c, http.MethodPost, in.s.URL+"/agir", url.Values{"demande": {token.Query().Get("demande")},
		"mandat": {in.mandateID}, "demarche": {"argent"}})
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/connexion/aidant/reauthentification") {
		t.Errorf("a choice posted without the new authentication: %d %s", status, loc)
	}
	if count(t, db, `SELECT COUNT(*) FROM oidc_codes`) != 0 || count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = 'access.denied'`) != denied {
		t.Error("the choice got a code, or was journaled as tampering")
	}
	// The request is still there: authenticating again answers it.
	back, again := in.browse(chooser, svc.redirect)
	if u, _ := url.Parse(back); !again || u.Query().Get("code") == "" {
		t.Errorf("after authenticating again: %s (authenticated again: %v)", back, again)
	}
}

// TestServicesDocumentationIsServed: the discovery document's
// service_documentation is a page of this instance, in French and
// English, with this instance's addresses and what the provider does.
func TestServicesDocumentationIsServed(t *testing.T) {
	s := startDev(t, "")
	status, b := fetch(t, s.URL+"/.well-known/openid-configuration")
	var d map[string]any
	if status != http.StatusOK || json.Unmarshal(b, &d) != nil {
		t.Fatalf("discovery: %d %s", status, b)
	}
	doc, _ := d["service_documentation"].(string)
	if doc != s.URL+"/services/documentation" {
		t.Fatalf("service_documentation = %q", doc)
	}
	status, b = fetch(t, doc)
	page := html.UnescapeString(string(b))
	if status != http.StatusOK {
		t.Fatalf("%s: %d", doc, status)
	}
	for _, want := range []string{s.URL + "/.well-known/openid-configuration", s.URL + "/oidc/logout", "eidas1", "eidas2",
		"request_not_supported", "max_age", "authorization_details", "Argent-Impots-Consommation", `lang="en"`, "private_key_jwt",
		"Connecting a public service to Aidants"} {
		if !strings.Contains(page, want) {
			t.Errorf("the documentation page lacks %q", want)
		}
	}
}

// goFlow runs an authorization code flow of svc with x/oauth2 (credentials
// in the header), the extra authorization parameters given, and returns
// the ID token's claims — or, when the provider answered the service with
// an error, that error code.
func (in *interop) goFlow(svc *service, extra url.Values) (claims map[string]any, errorCode string) {
	t := in.t
	t.Helper()
	ctx := t.Context()
	op, err := oidc.NewProvider(ctx, in.s.URL)
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: svc.clientID, ClientSecret: svc.secret, RedirectURL: svc.redirect, Endpoint: op.Endpoint(),
		Scopes: []string{oidc.ScopeOpenID, "profile"}}
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	state, nonce, verifier := oauth2.GenerateVerifier(), oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	for k := range extra {
		opts = append(opts, oauth2.SetAuthURLParam(k, extra.Get(k)))
	}
	back, _ := in.browse(conf.AuthCodeURL(state, opts...), svc.redirect)
	u, _ := url.Parse(back)
	if q := u.Query(); q.Get("state") != state || q.Get("iss") != in.s.URL {
		t.Fatalf("the service got %s", back)
	}
	if e := u.Query().Get("error"); e != "" {
		return nil, e
	}
	tok, err := conf.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := op.Verifier(&oidc.Config{ClientID: svc.clientID, SupportedSigningAlgs: []string{oidc.ES256}}).Verify(ctx, raw)
	if err != nil || idt.Nonce != nonce {
		t.Fatalf("go-oidc: %v", err)
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	return claims, ""
}

// TestACRFollowsTheAidantsSecondFactor: the ID token's acr is eidas2 when
// the aidant's session stands on an authentication with a second factor,
// eidas1 when it does not (a session of before the sessions recorded it);
// acr_values eidas2 is then a preference that does not fail, an essential
// acr of eidas2 is refused to the service before anyone is chosen, and an
// authentication again with the second factor restores eidas2.
func TestACRFollowsTheAidantsSecondFactor(t *testing.T) {
	in := newInterop(t)
	svc := in.register("niveaux", "client_secret_basic")
	db := openDB(t, in.s)
	if n := count(t, db, `SELECT COUNT(*) FROM sessions WHERE kind = 'aidant' AND ended_at IS NULL AND mfa`); n != 1 {
		t.Fatalf("%d open aidant sessions recorded with a second factor, want Camille's", n)
	}
	if c, _ := in.goFlow(svc, nil); c["acr"] != "eidas2" {
		t.Errorf("acr with a second factor: %v", c["acr"])
	}
	if _, err := db.W.Exec(`UPDATE sessions SET mfa = FALSE WHERE kind = 'aidant'`); err != nil {
		t.Fatal(err)
	}
	if c, _ := in.goFlow(svc, url.Values{"acr_values": {"eidas2"}}); c["acr"] != "eidas1" {
		t.Errorf("acr with one factor, eidas2 preferred: %v", c["acr"])
	}
	codes := count(t, db, `SELECT COUNT(*) FROM oidc_codes`)
	if _, e := in.goFlow(svc, url.Values{"claims": {`{"id_token":{"acr":{"essential":true,"values":["eidas2"]}}}`}}); e != "unmet_authentication_requirements" {
		t.Errorf("essential eidas2 with one factor: error %q", e)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM oidc_codes`); n != codes {
		t.Error("a code was issued though the essential acr was not met")
	}
	c, _ := in.goFlow(svc, url.Values{"prompt": {"login"}, "claims": {`{"id_token":{"acr":{"essential":true,"values":["eidas2"]}}}`}})
	if c["acr"] != "eidas2" {
		t.Errorf("after authenticating again with a second factor: acr %v", c["acr"])
	}
}
