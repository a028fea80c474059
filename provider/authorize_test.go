package provider_test

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"aidants/audit"
	"aidants/provider"
	"aidants/store"
	"aidants/store/storetest"
)

func TestAuthorizeRefusesBadRequestsWithPageOrRedirect(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	set := func(name, v string) func(url.Values) { return func(q url.Values) { q.Set(name, v) } }
	del := func(names ...string) func(url.Values) {
		return func(q url.Values) {
			for _, n := range names {
				q.Del(n)
			}
		}
	}
	cases := []struct {
		name string
		edit func(q url.Values)
		// page: an error page, never a redirect; else the error code sent
		// back to the redirect URI.
		page bool
		code string
	}{
		{name: "unregistered redirect_uri", edit: set("redirect_uri", "https://ailleurs.test.invalid/callback"), page: true},
		{name: "redirect_uri extended with a path", edit: func(q url.Values) { q.Set("redirect_uri", q.Get("redirect_uri")+"/x") }, page: true},
		{name: "redirect_uri extended with a query", edit: func(q url.Values) { q.Set("redirect_uri", q.Get("redirect_uri")+"?a=b") }, page: true},
		{name: "redirect_uri with a trailing slash", edit: func(q url.Values) { q.Set("redirect_uri", q.Get("redirect_uri")+"/") }, page: true},
		{name: "redirect_uri of another service", edit: set("redirect_uri", e.basic.redirect), page: true},
		{name: "no redirect_uri", edit: del("redirect_uri"), page: true},
		{name: "two redirect_uri", edit: func(q url.Values) { q.Add("redirect_uri", q.Get("redirect_uri")) }, page: true},
		{name: "unknown client_id", edit: set("client_id", "svc_inconnu"), page: true},
		{name: "no client_id", edit: del("client_id"), page: true},
		{name: "no PKCE", edit: del("code_challenge", "code_challenge_method"), code: "invalid_request"},
		{name: "PKCE plain", edit: func(q url.Values) {
			q.Set("code_challenge_method", "plain")
			q.Set("code_challenge", store.RandomToken(32))
		}, code: "invalid_request"},
		{name: "PKCE without method (plain by default)", edit: del("code_challenge_method"), code: "invalid_request"},
		{name: "no state", edit: del("state"), code: "invalid_request"},
		{name: "no nonce", edit: del("nonce"), code: "invalid_request"},
		{name: "response_type token", edit: set("response_type", "token"), code: "unsupported_response_type"},
		{name: "response_type code id_token", edit: set("response_type", "code id_token"), code: "unsupported_response_type"},
		{name: "no openid scope", edit: set("scope", "given_name family_name"), code: "invalid_scope"},
		{name: "unknown prompt value", edit: set("prompt", "create"), code: "invalid_request"},
		{name: "prompt none with login", edit: set("prompt", "none login"), code: "invalid_request"},
		{name: "negative max_age", edit: set("max_age", "-1"), code: "invalid_request"},
		{name: "max_age not a number", edit: set("max_age", "une minute"), code: "invalid_request"},
		{name: "max_age with a fraction", edit: set("max_age", "1.5"), code: "invalid_request"},
		{name: "two max_age", edit: func(q url.Values) { q.Set("max_age", "60"); q.Add("max_age", "0") }, code: "invalid_request"},
		{name: "response_mode fragment", edit: set("response_mode", "fragment"), code: "invalid_request"},
		{name: "response_mode form_post", edit: set("response_mode", "form_post"), code: "invalid_request"},
		{name: "a request object", edit: set("request", "eyJhbGciOiJub25lIn0.e30."), code: "request_not_supported"},
		{name: "a request_uri", edit: set("request_uri", "urn:ietf:params:oauth:request_uri:abc"), code: "request_uri_not_supported"},
		{name: "essential acr beyond eidas2", edit: set("claims", `{"id_token":{"acr":{"essential":true,"values":["eidas3"]}}}`), code: "unmet_authentication_requirements"},
		{name: "unknown rep_scope value", edit: set("claims", `{"id_token":{"rep_scope":{"essential":true,"values":["Cuisine"]}}}`), code: "invalid_request"},
		{name: "claims not JSON", edit: set("claims", `{"id_token":`), code: "invalid_request"},
		{name: "claims an array", edit: set("claims", `[]`), code: "invalid_request"},
		{name: "claims.id_token an array", edit: set("claims", `{"id_token":["email"]}`), code: "invalid_request"},
		{name: "essential not a boolean", edit: set("claims", `{"userinfo":{"email":{"essential":"oui"}}}`), code: "invalid_request"},
		{name: "rep_scope values not an array", edit: set("claims", `{"id_token":{"rep_scope":{"values":"Logement"}}}`), code: "invalid_request"},
		{name: "sub value not a string", edit: set("claims", `{"id_token":{"sub":{"value":42}}}`), code: "invalid_request"},
		{name: "two sub values", edit: set("claims", `{"id_token":{"sub":{"value":"a"}},"userinfo":{"sub":{"value":"b"}}}`), code: "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, f := e.params(e.jwt)
			c.edit(q)
			r, svc, err := e.p.Authorize(e.ctx, q)
			if r != nil || svc != nil {
				t.Fatalf("the request was accepted: %+v", r)
			}
			var pe *provider.PageError
			var re *provider.RedirectError
			if c.page {
				if !errors.As(err, &pe) || errors.As(err, &re) {
					t.Fatalf("err = %T %v, want a *PageError (never a redirect)", err, err)
				}
				return
			}
			if !errors.As(err, &re) {
				t.Fatalf("err = %T %v, want a *RedirectError", err, err)
			}
			u, err := url.Parse(re.URL(e.p.Issuer()))
			if err != nil {
				t.Fatal(err)
			}
			got := u.Query()
			if base := u.Scheme + "://" + u.Host + u.Path; base != e.jwt.redirect {
				t.Errorf("the error goes to %s, want the registered %s", base, e.jwt.redirect)
			}
			if got.Get("error") != c.code || got.Get("iss") != e.issuer {
				t.Errorf("redirect query = %v, want error %s and iss %s", got, c.code, e.issuer)
			}
			wantState := f.state
			if q.Get("state") == "" {
				wantState = ""
			}
			if got.Get("state") != wantState || got.Has("state") != (wantState != "") {
				t.Errorf("redirect state = %q, want %q", got.Get("state"), wantState)
			}
		})
	}
}

func TestAuthorizeIgnoresUnknownParameters(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	q, f := e.params(e.jwt)
	q.Set("ui_locales", "fr")
	q.Set("display", "page")
	q.Set("acr_values", "eidas3 eidas2")
	q.Set("utm_source", "lettre")
	q.Set("prompt", "consent select_account")
	q.Set("claims", `{"id_token":{"address":null,"acr":{"values":["eidas3"]}},"userinfo":{"phone_number":{"essential":true}},"access_token":{}}`)
	q.Set("scope", scope+" offline_access address")
	r, svc, err := e.p.Authorize(e.ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if svc.ID != e.jwt.svc.ID || r.RedirectURI != e.jwt.redirect || r.State != f.state || r.Nonce != f.nonce ||
		r.CodeChallenge != challengeOf(f.verifier) || len(r.RepScope) != 0 || r.PromptNone || !r.AuthAfter.IsZero() ||
		!equalJSON(r.Claims, provider.Requested{}) {
		t.Fatalf("request = %+v", r)
	}
	if r.Scope != scope {
		t.Errorf("scope = %q, want the known scopes only: %q", r.Scope, scope)
	}
}

func TestRepScopeRestrictsChoicesAndCode(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		// Without rep_scope: organisation A's mandate, both démarches; never
		// organisation B's mandate for the same person.
		all := e.begin(e.jwt, nil)
		r, svc, err := e.p.Request(e.ctx, all.request, testBinding)
		if err != nil {
			t.Fatal(err)
		}
		choices, err := e.p.Eligible(e.ctx, e.orgA.ID, r, svc, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(choices) != 1 || choices[0].MandateID != e.mA.ID || !sameSet(choices[0].Demarches, []string{"argent", "social"}) {
			t.Fatalf("choices without rep_scope = %+v", choices)
		}
		if choices[0].UsagerID != e.mA.UsagerID || choices[0].GivenName != "Joséphine Marie" || choices[0].FamilyName != "Lefèvre" {
			t.Errorf("choice = %+v", choices[0])
		}

		if cb, err := e.p.Eligible(e.ctx, e.orgB.ID, r, svc, ""); err != nil || len(cb) != 1 || cb[0].MandateID != e.mB.ID {
			t.Fatalf("choices of organisation B = %+v, %v; want its own mandate only", cb, err)
		}
		if none, err := e.p.Eligible(e.ctx, e.orgA.ID, r, svc, "Dupont"); err != nil || len(none) != 0 {
			t.Errorf("search Dupont = %+v, %v", none, err)
		}

		f := e.begin(e.jwt, func(q url.Values) {
			q.Set("claims", `{"id_token":{"rep_scope":{"essential":true,"values":["Social-Santé"]}}}`)
		})
		r, svc, err = e.p.Request(e.ctx, f.request, testBinding)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.RepScope, []string{"social"}) {
			t.Fatalf("rep_scope = %v, want [social]", r.RepScope)
		}
		choices, err = e.p.Eligible(e.ctx, e.orgA.ID, r, svc, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(choices) != 1 || !slices.Equal(choices[0].Demarches, []string{"social"}) {
			t.Fatalf("choices with rep_scope Social-Santé = %+v", choices)
		}
		if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), f.request, testBinding, e.mA.ID, "argent"); !errors.Is(err, provider.ErrNotEligible) {
			t.Fatalf("a code for argent when Social-Santé was asked: err = %v, want ErrNotEligible", err)
		}
		e.issue(f, e.a2, e.mA, "social")
		id, _ := e.tokens(f)
		claims := e.verify(e.jwt, id)
		if !equalJSON(claims["rep_scope"], []string{"Social-Santé"}) {
			t.Errorf("rep_scope = %v, want [Social-Santé]", claims["rep_scope"])
		}
		details, _ := claims["authorization_details"].([]any)
		if len(details) != 1 || !equalJSON(details[0].(map[string]any)["actions"], []string{"social"}) {
			t.Errorf("authorization_details = %v", claims["authorization_details"])
		}
	})
}

func TestIssueCodeRefusesWhatWasNotOffered(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		revoked := e.onSite(e.a, "fc-paul", "argent")
		e.revoke(revoked, "")
		f := e.begin(e.jwt, nil)
		logement := e.begin(e.logement, nil)
		before := e.count(`SELECT COUNT(*) FROM audit_events`)
		cases := []struct {
			name, request, mandate, demarche string
		}{
			{"a mandate of another organisation", f.request, e.mB.ID, "argent"},
			{"a démarche the mandate does not cover", f.request, e.mA.ID, "logement"},
			{"an unknown démarche", f.request, e.mA.ID, "cuisine"},
			{"a démarche the service does not serve", logement.request, e.mA.ID, "argent"},
			{"a revoked mandate", f.request, revoked.ID, "argent"},
			{"an unknown mandate", f.request, "man_inconnu", "argent"},
		}
		for _, c := range cases {
			if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), c.request, testBinding, c.mandate, c.demarche); !errors.Is(err, provider.ErrNotEligible) {
				t.Errorf("%s: err = %v, want ErrNotEligible", c.name, err)
			}
		}
		if after := e.count(`SELECT COUNT(*) FROM audit_events`); after != before || e.count(`SELECT COUNT(*) FROM oidc_codes`) != 0 {
			t.Fatalf("refused choices wrote %d events and %d codes", after-before, e.count(`SELECT COUNT(*) FROM oidc_codes`))
		}
		// The logement-only service offers no one: the mandate has no logement.
		r, svc, _ := e.p.Request(e.ctx, logement.request, testBinding)
		if choices, err := e.p.Eligible(e.ctx, e.orgA.ID, r, svc, ""); err != nil || len(choices) != 0 {
			t.Errorf("choices for a logement-only service = %+v, %v", choices, err)
		}

		// The refusals left the request pending: it is answered once.
		e.issue(f, e.a2, e.mA, "argent")
		if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), f.request, testBinding, e.mA.ID, "argent"); !errors.Is(err, provider.ErrRequestGone) {
			t.Errorf("a second code for one request: err = %v, want ErrRequestGone", err)
		}
		if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), "inconnue", testBinding, e.mA.ID, "argent"); !errors.Is(err, provider.ErrRequestGone) {
			t.Errorf("an unknown request: err = %v, want ErrRequestGone", err)
		}
		if n := e.events(audit.MandateUsed); n != 1 {
			t.Errorf("%d mandate.used events, want 1", n)
		}
	})
}

func TestPendingRequestExpires(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	f := e.begin(e.jwt, nil)
	e.clock.add(provider.RequestTTL + time.Second)
	if _, _, err := e.p.Request(e.ctx, f.request, testBinding); !errors.Is(err, provider.ErrRequestGone) {
		t.Errorf("Request after %s: err = %v, want ErrRequestGone", provider.RequestTTL, err)
	}
	if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), f.request, testBinding, e.mA.ID, "argent"); !errors.Is(err, provider.ErrRequestGone) {
		t.Errorf("IssueCode after %s: err = %v, want ErrRequestGone", provider.RequestTTL, err)
	}
}

func TestCancelSendsAccessDeniedOnce(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	f := e.begin(e.jwt, nil)
	target, err := e.p.Cancel(e.ctx, f.request, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(target)
	if q := u.Query(); !strings.HasPrefix(target, e.jwt.redirect+"?") || q.Get("error") != "access_denied" ||
		q.Get("state") != f.state || q.Get("iss") != e.issuer {
		t.Errorf("cancel sends the browser to %s", target)
	}
	if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), f.request, testBinding, e.mA.ID, "argent"); !errors.Is(err, provider.ErrRequestGone) {
		t.Errorf("a code after cancel: err = %v, want ErrRequestGone", err)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// A pending request whose redirect URI the service has since removed gets
// no code: the browser is never sent to an address no longer registered.
func TestRequestDiesWithItsRedirectURI(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	f := e.begin(e.jwt, nil)
	if err := e.p.SetRedirects(e.ctx, operator, e.jwt.svc.ID, []string{"https://nouveau.example.fr/retour"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), f.request, testBinding, e.mA.ID, "argent"); !errors.Is(err, provider.ErrRequestGone) {
		t.Errorf("a code after the redirect URI was removed: err = %v, want ErrRequestGone", err)
	}
}

// TestPendingRequestCostsNoWriteAndStaysWithItsBrowser: a service's
// request is anonymous, so keeping it until the aidant chooses writes
// nothing; it is sealed, and opens only for the browser that brought it,
// unaltered.
func TestPendingRequestCostsNoWriteAndStaysWithItsBrowser(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	units := e.log.Stats().Units.Load()
	f := e.begin(e.jwt, nil)
	for range 5 {
		e.begin(e.basic, nil)
	}
	if n := e.log.Stats().Units.Load() - units; n != 0 {
		t.Errorf("six authorization requests ran %d units on the writer, want none", n)
	}
	if strings.Contains(f.request, f.state) || strings.Contains(f.request, e.jwt.redirect) {
		t.Errorf("the pending request is readable: %s", f.request)
	}
	altered := []byte(f.request)
	altered[len(altered)/2] ^= 1
	for _, c := range []struct{ name, token, binding string }{
		{"another browser", f.request, "the-binding-secret-of-another-browser"},
		{"no browser binding", f.request, ""},
		{"an altered request", string(altered), testBinding},
	} {
		if _, _, err := e.p.Request(e.ctx, c.token, c.binding); !errors.Is(err, provider.ErrRequestGone) {
			t.Errorf("%s: Request = %v, want ErrRequestGone", c.name, err)
		}
		if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), c.token, c.binding, e.mA.ID, "argent"); !errors.Is(err, provider.ErrRequestGone) {
			t.Errorf("%s: IssueCode = %v, want ErrRequestGone", c.name, err)
		}
		if _, err := e.p.Cancel(e.ctx, c.token, c.binding); !errors.Is(err, provider.ErrRequestGone) {
			t.Errorf("%s: Cancel = %v, want ErrRequestGone", c.name, err)
		}
	}
	if n := e.events(audit.MandateUsed); n != 0 {
		t.Errorf("%d mandate.used events, want none", n)
	}
	e.issue(f, e.a2, e.mA, "argent")
}
