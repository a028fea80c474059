package main

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
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
	if n := count(t, openDB(t, in.s), `SELECT COUNT(*) FROM oidc_requests`); n != 0 {
		t.Errorf("%d requests wait on the server", n)
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
