package provider_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"aidants/audit"
	"aidants/internal/jwtverify"
	"aidants/provider"
	"aidants/store"
	"aidants/store/storetest"
)

// formEncode encodes as openid-client does for client_secret_basic
// (RFC 6749 §2.3.1, application/x-www-form-urlencoded): every character
// but letters and digits is escaped, "_" and "-" included.
func formEncode(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func TestBasicCredentialsAreFormDecoded(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		id, secret := e.basic.svc.ID, e.basic.secret
		if !strings.Contains(id, "_") || formEncode(id) == id {
			t.Fatalf("client_id %q would not show the encoding", id)
		}
		// As openid-client sends them: svc_… arrives as svc%5F….
		f := e.code(e.basic)
		r := e.postToken(f.form(), formEncode(id), formEncode(secret))
		if r.status != http.StatusOK || r.str("id_token") == "" {
			t.Fatalf("form-encoded Basic credentials: %d %v", r.status, r.body)
		}
		e.verify(e.basic, r.str("id_token"))
		// Sent as they are, they decode to themselves.
		if r := e.postToken(e.code(e.basic).form(), id, secret); r.status != http.StatusOK {
			t.Fatalf("Basic credentials sent as they are: %d %v", r.status, r.body)
		}
		// x/oauth2 in the header, as a Go service would.
		g := e.code(e.basic)
		conf := oauth2.Config{ClientID: id, ClientSecret: secret, RedirectURL: e.basic.redirect,
			Endpoint: oauth2.Endpoint{TokenURL: e.issuer + "/oidc/token", AuthStyle: oauth2.AuthStyleInHeader}}
		if _, err := conf.Exchange(e.ctx, g.code, oauth2.VerifierOption(g.verifier)); err != nil {
			t.Fatalf("x/oauth2 AuthStyleInHeader: %v", err)
		}

		bad := e.code(e.basic)
		before := e.count(`SELECT COUNT(*) FROM audit_events`)
		basic := func(v string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("Authorization", "Basic "+v) }
		}
		cases := []struct {
			name string
			edit func(*http.Request)
			form func(url.Values)
		}{
			{"a percent sign that is no escape", basic(base64.StdEncoding.EncodeToString([]byte(formEncode(id) + ":" + secret + "%zz"))), nil},
			{"a client_id that is no escape", basic(base64.StdEncoding.EncodeToString([]byte("svc%5:" + secret))), nil},
			{"not base64", basic("!!!"), nil},
			{"no colon", basic(base64.StdEncoding.EncodeToString([]byte(id + secret))), nil},
			{"another client_id in the body", basic(base64.StdEncoding.EncodeToString([]byte(id + ":" + secret))),
				func(f url.Values) { f.Set("client_id", e.post.svc.ID) }},
			{"the client_id encoded twice", basic(base64.StdEncoding.EncodeToString([]byte(formEncode(formEncode(id)) + ":" + formEncode(secret)))), nil},
			{"another secret, encoded", basic(base64.StdEncoding.EncodeToString([]byte(formEncode(id) + ":" + formEncode(secret+"x")))), nil},
		}
		for _, c := range cases {
			form := bad.form()
			if c.form != nil {
				c.form(form)
			}
			req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.issuer+"/oidc/token", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			c.edit(req)
			wantError(t, c.name, e.do(req), http.StatusUnauthorized, "invalid_client")
		}
		if after := e.count(`SELECT COUNT(*) FROM audit_events`); after != before {
			t.Errorf("refused credentials journaled %d events", after-before)
		}
		// None of them spent the code.
		if r := e.postToken(bad.form(), formEncode(id), formEncode(secret)); r.status != http.StatusOK {
			t.Errorf("the code after the refusals: %d %v", r.status, r.body)
		}
	})
}

func TestGoOAuth2ClientsCompleteWithEitherAuthStyle(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		op, err := oidc.NewProvider(e.ctx, e.issuer)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			client *client
			style  oauth2.AuthStyle
		}{{e.basic, oauth2.AuthStyleInHeader}, {e.post, oauth2.AuthStyleInParams}} {
			f := e.code(c.client)
			conf := oauth2.Config{ClientID: c.client.svc.ID, ClientSecret: c.client.secret, RedirectURL: c.client.redirect, Endpoint: op.Endpoint()}
			conf.Endpoint.AuthStyle = c.style
			tok, err := conf.Exchange(e.ctx, f.code, oauth2.VerifierOption(f.verifier))
			if err != nil {
				t.Fatalf("%s with auth style %d: %v", c.client.svc.AuthMethod, c.style, err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := op.Verifier(&oidc.Config{ClientID: c.client.svc.ID, SupportedSigningAlgs: []string{oidc.ES256}, Now: e.clock.now}).Verify(e.ctx, raw)
			if err != nil || idt.Nonce != f.nonce {
				t.Fatalf("%s: go-oidc: %v (nonce %q)", c.client.svc.AuthMethod, err, idt.Nonce)
			}
			ui, err := op.UserInfo(e.ctx, oauth2.StaticTokenSource(tok))
			if err != nil || ui.Subject != idt.Subject {
				t.Fatalf("%s: userinfo %v, %v", c.client.svc.AuthMethod, ui, err)
			}
		}
		// The registered method only: a client_secret_post service in the
		// header, a client_secret_basic one in the body.
		for _, c := range []struct {
			client *client
			style  oauth2.AuthStyle
		}{{e.post, oauth2.AuthStyleInHeader}, {e.basic, oauth2.AuthStyleInParams}} {
			f := e.code(c.client)
			conf := oauth2.Config{ClientID: c.client.svc.ID, ClientSecret: c.client.secret, RedirectURL: c.client.redirect, Endpoint: op.Endpoint()}
			conf.Endpoint.AuthStyle = c.style
			_, err := conf.Exchange(e.ctx, f.code, oauth2.VerifierOption(f.verifier))
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
				t.Errorf("%s with auth style %d: %v, want invalid_client", c.client.svc.AuthMethod, c.style, err)
			}
		}
	})
}

// requestObject is a request object of client c, signed by c's key,
// carrying the whole request.
func (e *env) requestObject(c *client, q url.Values) string {
	e.t.Helper()
	claims := map[string]any{"iss": c.svc.ID, "aud": e.issuer, "iat": e.clock.now().Unix(), "exp": e.clock.now().Add(time.Minute).Unix()}
	for k := range q {
		claims[k] = q.Get(k)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: c.key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("oauth-authz-req+jwt"))
	if err != nil {
		e.t.Fatal(err)
	}
	return sign(e.t, signer, claims)
}

func TestRequestObjectsAreRefusedToTheService(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	// A service with two redirect URIs: the one a request object names
	// cannot be guessed.
	two := e.addClient("service-f", provider.PrivateKeyJWT, "", "argent")
	second := "https://service-f.test.invalid/autre"
	if err := e.p.SetRedirects(e.ctx, operator, two.svc.ID, []string{two.redirect, second}, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		c     *client
		query func(full url.Values) url.Values
		// where the refusal goes, with which state; "" for a page
		to, state, code string
	}{
		{name: "request with the parameters in the query too", c: e.jwt, query: func(q url.Values) url.Values {
			q.Set("request", e.requestObject(e.jwt, q))
			return q
		}, to: e.jwt.redirect, state: "query", code: "request_not_supported"},
		{name: "request_uri with the parameters in the query too", c: e.jwt, query: func(q url.Values) url.Values {
			q.Set("request_uri", "https://service-a.test.invalid/requests/1")
			return q
		}, to: e.jwt.redirect, state: "query", code: "request_uri_not_supported"},
		{name: "openid-client's JAR: client_id and request only", c: two, query: func(q url.Values) url.Values {
			o := url.Values{"client_id": {two.svc.ID}}
			q.Set("redirect_uri", second)
			o.Set("request", e.requestObject(two, q))
			return o
		}, to: second, state: "object", code: "request_not_supported"},
		{name: "PAR-style request_uri alone, one redirect URI registered", c: e.jwt, query: func(q url.Values) url.Values {
			return url.Values{"client_id": {e.jwt.svc.ID}, "request_uri": {"urn:ietf:params:oauth:request_uri:abc"}}
		}, to: e.jwt.redirect, code: "request_uri_not_supported"},
		{name: "an unsigned object alone, one redirect URI registered", c: e.jwt, query: func(q url.Values) url.Values {
			return url.Values{"client_id": {e.jwt.svc.ID}, "request": {"eyJhbGciOiJub25lIn0.e30."}}
		}, to: e.jwt.redirect, code: "request_not_supported"},
		{name: "an object naming an unregistered redirect URI, two registered", c: two, query: func(q url.Values) url.Values {
			q.Set("redirect_uri", "https://ailleurs.test.invalid/cb")
			return url.Values{"client_id": {two.svc.ID}, "request": {e.requestObject(two, q)}}
		}},
		{name: "request_uri alone, two registered", c: two, query: func(q url.Values) url.Values {
			return url.Values{"client_id": {two.svc.ID}, "request_uri": {"urn:x"}}
		}},
		{name: "an unknown client", c: e.jwt, query: func(q url.Values) url.Values {
			q.Set("client_id", "svc_inconnu")
			q.Set("request", e.requestObject(e.jwt, q))
			return q
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, f := e.params(c.c)
			query := c.query(q)
			r, _, err := e.p.Authorize(e.ctx, query)
			if r != nil {
				t.Fatalf("accepted: %+v", r)
			}
			var re *provider.RedirectError
			if c.to == "" {
				var pe *provider.PageError
				if !errors.As(err, &pe) {
					t.Fatalf("err = %T %v, want a page, never a redirect", err, err)
				}
				return
			}
			if !errors.As(err, &re) {
				t.Fatalf("err = %T %v, want a *RedirectError", err, err)
			}
			u, _ := url.Parse(re.URL(e.issuer))
			want := map[string]string{"query": f.state, "object": f.state, "": ""}[c.state]
			if base := strings.TrimSuffix(u.String(), "?"+u.RawQuery); base != c.to || u.Query().Get("error") != c.code ||
				u.Query().Get("state") != want || u.Query().Get("iss") != e.issuer {
				t.Errorf("refusal sent to %s, want %s with error %s and state %q", u, c.to, c.code, want)
			}
		})
	}
	if n := e.count(`SELECT COUNT(*) FROM spent_requests`); n != 0 {
		t.Errorf("%d requests were recorded", n)
	}
}

func TestPromptAndMaxAgeSetHowRecentTheAuthenticationMustBe(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	cases := []struct {
		prompt, maxAge string
		ago            time.Duration // how long before the request the authentication must be at the latest; -1 for any
		none           bool
	}{
		{"", "", -1, false},
		{"consent", "", -1, false},
		{"select_account consent", "", -1, false},
		{"login", "", 0, false},
		{"consent login", "", 0, false},
		{"", "0", 0, false},
		{"", "60", time.Minute, false},
		{"login", "60", 0, false},
		{"", "315360001", -1, false}, // beyond ten years: asks nothing
		{"none", "", -1, true},
		{"none", "60", time.Minute, true},
	}
	for _, c := range cases {
		q, _ := e.params(e.jwt)
		if c.prompt != "" {
			q.Set("prompt", c.prompt)
		}
		if c.maxAge != "" {
			q.Set("max_age", c.maxAge)
		}
		now := e.clock.now()
		r, _, err := e.p.Authorize(e.ctx, q)
		if err != nil {
			t.Errorf("prompt %q max_age %q: %v", c.prompt, c.maxAge, err)
			continue
		}
		if r.PromptNone != c.none {
			t.Errorf("prompt %q: PromptNone = %v", c.prompt, r.PromptNone)
		}
		if c.ago < 0 {
			if !r.AuthAfter.IsZero() {
				t.Errorf("prompt %q max_age %q: AuthAfter = %v, want none", c.prompt, c.maxAge, r.AuthAfter)
			}
			continue
		}
		if d := now.Add(-c.ago).Sub(r.AuthAfter.Time); d < -time.Second || d > time.Second {
			t.Errorf("prompt %q max_age %q: AuthAfter %v, want %s before the request", c.prompt, c.maxAge, r.AuthAfter, c.ago)
		}
		if r.Reauthenticate(r.AuthAfter.Time) || !r.Reauthenticate(r.AuthAfter.Add(-time.Second)) {
			t.Errorf("Reauthenticate does not draw the line at AuthAfter")
		}
	}
}

// TestMaxAgeAndPromptLoginMakeTheAidantAuthenticateAgain: a choice made on
// an authentication older than the service accepts is refused with
// ErrReauthenticate, writing nothing and keeping the request; made after
// the new authentication, the code is issued and the ID token's auth_time
// is that authentication's.
func TestMaxAgeAndPromptLoginMakeTheAidantAuthenticateAgain(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		for _, edit := range []func(url.Values){
			func(q url.Values) { q.Set("max_age", "60") },
			func(q url.Values) { q.Set("max_age", "0") },
			func(q url.Values) { q.Set("prompt", "login") },
		} {
			f := e.begin(e.jwt, edit)
			r, _, err := e.p.Request(e.ctx, f.request, testBinding)
			if err != nil {
				t.Fatal(err)
			}
			if !r.Reauthenticate(e.authTime) {
				t.Fatalf("the aidant's authentication of two minutes ago is accepted: AuthAfter %v", r.AuthAfter)
			}
			before := e.count(`SELECT COUNT(*) FROM audit_events`)
			if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), f.request, testBinding, e.mA.ID, "argent"); !errors.Is(err, provider.ErrReauthenticate) {
				t.Fatalf("a choice on an old authentication: %v, want ErrReauthenticate", err)
			}
			if after := e.count(`SELECT COUNT(*) FROM audit_events`); after != before || e.count(`SELECT COUNT(*) FROM oidc_codes`) != 0 {
				t.Fatal("the refused choice wrote something")
			}
			// The aidant signs in again, a second later.
			e.clock.add(time.Second)
			again := provider.Acting{AidantID: e.a2.AidantID, OrganisationID: e.a2.OrganisationID, AuthTime: e.clock.now().Truncate(time.Second)}
			target, err := e.p.IssueCode(e.ctx, again, f.request, testBinding, e.mA.ID, "argent")
			if err != nil {
				t.Fatalf("the choice after the new authentication: %v", err)
			}
			u, _ := url.Parse(target)
			f.code = u.Query().Get("code")
			id, _ := e.tokens(f)
			if c := e.verify(e.jwt, id); c["auth_time"] != float64(again.AuthTime.Unix()) {
				t.Errorf("auth_time = %v, want the new authentication's %d", c["auth_time"], again.AuthTime.Unix())
			}
			e.db.W.Exec(`DELETE FROM oidc_codes`)
		}
	})
}

func TestACRSaysWhatTheAidantsAuthenticationAchieved(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		essential := func(vals ...string) func(url.Values) {
			b, _ := json.Marshal(map[string]any{"id_token": map[string]any{"acr": map[string]any{"essential": true, "values": vals}}})
			return func(q url.Values) { q.Set("claims", string(b)) }
		}
		cases := []struct {
			name string
			edit func(url.Values)
			mfa  bool
			want string // "" for ErrUnmetACR
		}{
			{"acr_values eidas2, one factor: a preference, not a failure", func(q url.Values) { q.Set("acr_values", "eidas2") }, false, "eidas1"},
			{"acr_values eidas2, two factors", func(q url.Values) { q.Set("acr_values", "eidas2") }, true, "eidas2"},
			{"acr_values eidas1, two factors: what was achieved", func(q url.Values) { q.Set("acr_values", "eidas1") }, true, "eidas2"},
			{"acr_values eidas3", func(q url.Values) { q.Set("acr_values", "eidas3") }, true, "eidas2"},
			{"no acr asked, one factor", nil, false, "eidas1"},
			{"essential eidas2, two factors", essential("eidas2"), true, "eidas2"},
			{"essential eidas2, one factor", essential("eidas2"), false, ""},
			{"essential eidas1, two factors: the level asked, which two factors meet", essential("eidas1"), true, "eidas1"},
			{"essential eidas1 or eidas2, two factors", essential("eidas1", "eidas2"), true, "eidas2"},
			{"essential eidas2 or eidas3, one factor", essential("eidas2", "eidas3"), false, ""},
		}
		for _, c := range cases {
			f := e.begin(e.jwt, c.edit)
			a := e.acting(e.a2)
			a.MFA = c.mfa
			target, err := e.p.IssueCode(e.ctx, a, f.request, testBinding, e.mA.ID, "argent")
			if c.want == "" {
				if !errors.Is(err, provider.ErrUnmetACR) {
					t.Errorf("%s: %v, want ErrUnmetACR", c.name, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			u, _ := url.Parse(target)
			f.code = u.Query().Get("code")
			id, _ := e.tokens(f)
			if got := e.verify(e.jwt, id)["acr"]; got != c.want {
				t.Errorf("%s: acr %v, want %s", c.name, got, c.want)
			}
		}
		// An unmet essential acr is answered to the service.
		f := e.begin(e.jwt, essential("eidas2"))
		target, err := e.p.Refuse(e.ctx, f.request, testBinding, "unmet_authentication_requirements", "no second factor")
		if u, _ := url.Parse(target); err != nil || u.Query().Get("error") != "unmet_authentication_requirements" || u.Query().Get("state") != f.state {
			t.Errorf("refusal: %s %v", target, err)
		}
	})
}

func TestClaimsParameterReleasesWhatItAsksWhereItAsks(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		f := e.begin(e.jwt, func(q url.Values) {
			q.Set("scope", "openid")
			q.Set("claims", `{"id_token":{"birthdate":null,"gender":{"essential":true},"address":null,"rep_scope":{"values":["Argent-Impots-Consommation"]}},
				"userinfo":{"email":{"essential":false},"birthplace":{"essential":true},"given_name":{"value":"Quelqu'un d'autre"},"phone_number":null}}`)
		})
		e.issue(f, e.a2, e.mA, "argent")
		id, at := e.tokens(f)
		c := e.verify(e.jwt, id)
		if c["birthdate"] != "1948-03-12" || c["gender"] != "female" {
			t.Errorf("ID token: birthdate %v, gender %v", c["birthdate"], c["gender"])
		}
		for _, name := range []string{"email", "birthplace", "given_name", "family_name", "address", "phone_number"} {
			if _, ok := c[name]; ok {
				t.Errorf("the ID token carries %s, asked only for userinfo or not at all", name)
			}
		}
		if !equalJSON(c["rep_scope"], []string{"Argent-Impots-Consommation"}) {
			t.Errorf("rep_scope = %v", c["rep_scope"])
		}
		u := e.userinfo(at, nil)
		if u.status != http.StatusOK || u.body["email"] != "josephine.lefevre@example.org" || u.body["birthplace"] != "44109" ||
			u.body["given_name"] != "Joséphine Marie" || u.body["sub"] != c["sub"] {
			t.Errorf("userinfo = %v", u.body)
		}
		for _, name := range []string{"birthdate", "gender", "family_name"} {
			if _, ok := u.body[name]; ok {
				t.Errorf("userinfo carries %s, asked only for the ID token", name)
			}
		}
		if u.body["act"] == nil || u.body["authorization_details"] == nil {
			t.Errorf("userinfo lost who acts: %v", u.body)
		}
	})
}

func TestClaimsSubRestrictsWhoMayBeChosen(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		paul := e.onSite(e.a, "fc-paul", "argent")
		sub, _ := e.verify(e.jwt, first(e.tokens(e.code(e.jwt))))["sub"].(string)
		f := e.begin(e.jwt, func(q url.Values) {
			q.Set("claims", `{"id_token":{"sub":{"value":"`+sub+`"}}}`)
		})
		r, svc, err := e.p.Request(e.ctx, f.request, testBinding)
		if err != nil {
			t.Fatal(err)
		}
		choices, err := e.p.Eligible(e.ctx, e.orgA.ID, r, svc, "")
		if err != nil || len(choices) != 1 || choices[0].MandateID != e.mA.ID {
			t.Fatalf("choices for sub %s: %+v, %v; want Joséphine's mandate only", sub, choices, err)
		}
		if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), f.request, testBinding, paul.ID, "argent"); !errors.Is(err, provider.ErrNotEligible) {
			t.Fatalf("another person than the one asked: %v, want ErrNotEligible", err)
		}
		e.issue(f, e.a2, e.mA, "argent")
		if got := e.verify(e.jwt, first(e.tokens(f)))["sub"]; got != sub {
			t.Errorf("sub = %v, want %s", got, sub)
		}
		// Another service's sub for the same person names no one here.
		g := e.begin(e.basic, func(q url.Values) { q.Set("claims", `{"userinfo":{"sub":{"value":"`+sub+`"}}}`) })
		r, svc, _ = e.p.Request(e.ctx, g.request, testBinding)
		if choices, err := e.p.Eligible(e.ctx, e.orgA.ID, r, svc, ""); err != nil || len(choices) != 0 {
			t.Errorf("service B asking for service A's sub: %+v, %v", choices, err)
		}
	})
}

// addSigned registers a client_secret_basic service whose userinfo is
// signed with alg.
func (e *env) addSigned(name, alg string) *client {
	e.t.Helper()
	c := &client{redirect: "https://" + name + ".test.invalid/callback"}
	svc, secret, err := e.p.AddService(e.ctx, operator, provider.NewService{Name: name, RedirectURIs: []string{c.redirect},
		Demarches: []string{"argent"}, AuthMethod: provider.ClientSecretBasic, IDTokenAlg: alg, UserinfoSigned: true})
	if err != nil {
		e.t.Fatal(err)
	}
	c.svc, c.secret = svc, secret
	return c
}

// rawUserinfo calls userinfo and returns the answer as it came.
func (e *env) rawUserinfo(token string) (int, string, string) {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodGet, e.issuer+"/oidc/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.StatusCode, res.Header.Get("Content-Type"), string(b)
}

func TestSignedUserinfoIsAJWTOfTheServicesAlgorithm(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		op, err := oidc.NewProvider(e.ctx, e.issuer)
		if err != nil {
			t.Fatal(err)
		}
		for _, alg := range []string{"ES256", "RS256"} {
			c := e.addSigned("signe-"+strings.ToLower(alg), alg)
			f := e.code(c)
			id, at := e.tokens(f)
			idc := e.verify(c, id)
			status, ctype, body := e.rawUserinfo(at)
			if status != http.StatusOK || ctype != "application/jwt" {
				t.Fatalf("%s: userinfo %d %s", alg, status, ctype)
			}
			tok, err := jwtverify.Parse(body, jose.SignatureAlgorithm(alg))
			if err != nil {
				t.Fatalf("%s: not a JWS of %s: %v", alg, alg, err)
			}
			if tok.KeyID != header(t, id).KeyID {
				t.Errorf("%s: signed by key %s, the ID token by %s", alg, tok.KeyID, header(t, id).KeyID)
			}
			key, ok, err := e.keys.Public(e.ctx, tok.KeyID)
			if err != nil || !ok {
				t.Fatalf("%s: key %s: %v", alg, tok.KeyID, err)
			}
			var claims map[string]any
			if _, err := tok.Verify(key, jwtverify.Expect{Issuer: e.issuer, Audience: []string{c.svc.ID}, AllowExpired: true, Now: e.clock.now()}, &claims); err != nil {
				t.Fatalf("%s: %v", alg, err)
			}
			for _, name := range []string{"exp", "nonce", "auth_time"} {
				if _, ok := claims[name]; ok {
					t.Errorf("%s: signed userinfo carries %s: it could pass for an ID token", alg, name)
				}
			}
			want := map[string]any{}
			for k, v := range idc {
				if !slices.Contains(idOnly, k) {
					want[k] = v
				}
			}
			delete(claims, "iss")
			delete(claims, "aud")
			delete(claims, "iat")
			if !equalJSON(claims, want) {
				t.Errorf("%s: signed userinfo %v\nwant %v", alg, claims, want)
			}
			// go-oidc reads a signed userinfo and checks its signature.
			ui, err := op.UserInfo(e.ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: at, TokenType: "Bearer"}))
			if err != nil || ui.Subject != idc["sub"] {
				t.Errorf("%s: go-oidc userinfo %v, %v", alg, ui, err)
			}
		}
		// A service that did not ask still gets JSON.
		_, at := e.tokens(e.code(e.basic))
		if status, ctype, _ := e.rawUserinfo(at); status != http.StatusOK || ctype != "application/json" {
			t.Errorf("plain userinfo: %d %s", status, ctype)
		}
	})
}

func TestUpdateServiceChangesWhatItSaysOrNothing(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ptr := func(s string) *string { return &s }
		yes := true
		list := func(v ...string) *[]string { return &v }
		row := func() string {
			var r struct {
				Name   string `db:"name"`
				Dem    string `db:"demarches"`
				Alg    string `db:"id_token_alg"`
				Signed bool   `db:"userinfo_signed"`
			}
			if err := e.db.R.Get(&r, e.db.Rebind(`SELECT name, demarches, id_token_alg, userinfo_signed FROM services WHERE id = ?`), e.basic.svc.ID); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprint(r)
		}
		// The service is read (and cached) before the change.
		_, at := e.tokens(e.code(e.basic))
		before, events := row(), e.count(`SELECT COUNT(*) FROM audit_events`)
		for _, c := range []struct {
			name string
			u    provider.ServiceUpdate
			want string
		}{
			{"nothing", provider.ServiceUpdate{}, "nothing to change"},
			{"an HMAC algorithm", provider.ServiceUpdate{IDTokenAlg: ptr("HS256")}, "ES256 or RS256"},
			{"an empty name", provider.ServiceUpdate{Name: ptr("  ")}, "--name"},
			{"an unknown démarche, and a good algorithm", provider.ServiceUpdate{Demarches: list("argent", "cuisine"), IDTokenAlg: ptr("RS256")}, "cuisine"},
			{"no démarche", provider.ServiceUpdate{Demarches: list()}, "at least one démarche"},
			{"two mistakes at once", provider.ServiceUpdate{Name: ptr(""), IDTokenAlg: ptr("none"), UserinfoSigned: &yes}, "--name"},
		} {
			_, err := e.p.UpdateService(e.ctx, operator, e.basic.svc.ID, c.u)
			var inv *provider.InvalidError
			if !errors.As(err, &inv) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want an *InvalidError saying %q", c.name, err, c.want)
			}
		}
		if _, err := e.p.UpdateService(e.ctx, operator, "svc_inconnu", provider.ServiceUpdate{UserinfoSigned: &yes}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("an unknown service: %v, want ErrNotFound", err)
		}
		if after := row(); after != before || e.count(`SELECT COUNT(*) FROM audit_events`) != events {
			t.Fatalf("a mistake changed the service: %s → %s", before, after)
		}
		if _, ctype, _ := e.rawUserinfo(at); ctype != "application/json" {
			t.Fatalf("userinfo before the change: %s", ctype)
		}

		svc, err := e.p.UpdateService(e.ctx, operator, e.basic.svc.ID, provider.ServiceUpdate{Name: ptr("Impôts (nouveau nom)"),
			Demarches: list("argent", "logement"), IDTokenAlg: ptr("RS256"), UserinfoSigned: &yes})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Name != "Impôts (nouveau nom)" || svc.IDTokenAlg != "RS256" || !svc.UserinfoSigned || !sameSet(svc.Demarches, []string{"argent", "logement"}) {
			t.Errorf("updated service = %+v", svc)
		}
		bodies := e.bodies(audit.ServiceUpdated)
		if len(bodies) != 1 || !strings.Contains(bodies[0], `"changed":["name","demarches","id_token_alg","userinfo_signed"]`) {
			t.Errorf("service.updated events: %v", bodies)
		}
		// At once, though the old registration was cached: the access
		// token issued before gets a signed RS256 answer, and a new flow an
		// RS256 ID token.
		status, ctype, body := e.rawUserinfo(at)
		if status != http.StatusOK || ctype != "application/jwt" {
			t.Fatalf("userinfo after the change: %d %s", status, ctype)
		}
		if tok, err := jwtverify.Parse(body, jose.RS256); err != nil || tok.Algorithm != "RS256" {
			t.Errorf("signed userinfo: %v", err)
		}
		if h := header(t, first(e.tokens(e.code(e.basic)))); h.Algorithm != "RS256" {
			t.Errorf("ID token alg after the change: %s", h.Algorithm)
		}
		// The same values again change nothing and journal nothing.
		if _, err := e.p.UpdateService(e.ctx, operator, e.basic.svc.ID, provider.ServiceUpdate{UserinfoSigned: &yes}); err != nil {
			t.Fatal(err)
		}
		if n := e.events(audit.ServiceUpdated); n != 1 {
			t.Errorf("%d service.updated events after a change to the same value, want 1", n)
		}
	})
}

// TestDiscoveryAdvertisesOnlyWhatWorks takes the discovery document at
// its word: every prompt value, response mode, scope and acr value it
// lists is accepted, every claim it lists is released by some request,
// and the request objects it says are unsupported are refused.
func TestDiscoveryAdvertisesOnlyWhatWorks(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	d := e.p.Discovery()
	strs := func(name string) []string { v, _ := d[name].([]string); return v }
	for _, p := range strs("prompt_values_supported") {
		q, _ := e.params(e.jwt)
		q.Set("prompt", p)
		if _, _, err := e.p.Authorize(e.ctx, q); err != nil {
			t.Errorf("prompt %s: %v", p, err)
		}
	}
	for _, m := range strs("response_modes_supported") {
		q, _ := e.params(e.jwt)
		q.Set("response_mode", m)
		if _, _, err := e.p.Authorize(e.ctx, q); err != nil {
			t.Errorf("response_mode %s: %v", m, err)
		}
	}
	q, _ := e.params(e.jwt)
	q.Set("scope", strings.Join(strs("scopes_supported"), " "))
	r, _, err := e.p.Authorize(e.ctx, q)
	if err != nil || r.Scope != q.Get("scope") {
		t.Errorf("scopes_supported: %v, kept %q", err, r.Scope)
	}
	reached := map[string]bool{provider.ACRFor(false): true, provider.ACRFor(true): true}
	if !equalJSON(strs("acr_values_supported"), []string{"eidas1", "eidas2"}) || len(reached) != 2 || !reached["eidas1"] || !reached["eidas2"] {
		t.Errorf("acr_values_supported %v, reached %v", strs("acr_values_supported"), reached)
	}
	// Every claim listed, in the ID token of a request asking for all.
	f := e.begin(e.jwt, func(q url.Values) { q.Set("scope", strings.Join(strs("scopes_supported"), " ")) })
	e.issue(f, e.a2, e.mA, "argent")
	c := e.verify(e.jwt, first(e.tokens(f)))
	for _, name := range strs("claims_supported") {
		if _, ok := c[name]; !ok {
			t.Errorf("claims_supported lists %s, absent from the ID token %v", name, c)
		}
	}
	if d["request_parameter_supported"] != false || d["request_uri_parameter_supported"] != false {
		t.Error("discovery does not say request objects are unsupported")
	}
}

// TestAnAuthenticationMadeForTheRequestCountsToTheSecond: identity
// providers give auth_time in whole seconds, so a new authentication in
// the second the request arrived reads as before it; made on the way to
// this request, it counts — and an authentication of an earlier second
// never does.
func TestAnAuthenticationMadeForTheRequestCountsToTheSecond(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		// The request arrives in the middle of a second.
		e.clock.add(time.Duration(1500_000_000 - e.clock.now().Nanosecond()))
		f := e.begin(e.jwt, func(q url.Values) { q.Set("prompt", "login") })
		second := e.clock.now().Truncate(time.Second)
		var err error
		pending := func() *provider.AuthRequest {
			r, _, err := e.p.Request(e.ctx, f.request, testBinding)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if !pending().Reauthenticate(second) {
			t.Fatal("an authentication of the request's second, half a second before it, is taken as after it")
		}
		// An earlier authentication, even announced for this request,
		// changes nothing.
		if f.request, err = e.p.Authenticated(f.request, testBinding, second.Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if !pending().Reauthenticate(second) || !pending().Reauthenticate(second.Add(-time.Second)) {
			t.Fatal("an authentication of the second before the request satisfied it")
		}
		if f.request, err = e.p.Authenticated(f.request, testBinding, second); err != nil {
			t.Fatal(err)
		}
		r := pending()
		if r.Reauthenticate(second) || !r.Reauthenticate(second.Add(-time.Millisecond)) {
			t.Fatalf("after the authentication made for the request: AuthAfter %v", r.AuthAfter)
		}
		a := e.acting(e.a2)
		a.AuthTime = second
		target, err := e.p.IssueCode(e.ctx, a, f.request, testBinding, e.mA.ID, "argent")
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(target)
		f.code = u.Query().Get("code")
		if c := e.verify(e.jwt, first(e.tokens(f))); c["auth_time"] != float64(second.Unix()) {
			t.Errorf("auth_time = %v, want %d", c["auth_time"], second.Unix())
		}
		// A request gone is no error: it is given back as it came, and
		// the chooser will say it is gone.
		if got, err := e.p.Authenticated("inconnue", testBinding, second); err != nil || got != "inconnue" {
			t.Errorf("Authenticated of an unknown request: %q, %v", got, err)
		}
	})
}
