package provider_test

import (
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
	"testing"
	"time"

	"aidants/audit"
	"aidants/internal/jwtverify"
	"aidants/provider"
	"aidants/store"
	"aidants/store/storetest"
)

func TestCodeNeedsTheVerifierOfItsChallenge(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		f := e.code(e.jwt)
		cases := []struct{ name, verifier string }{
			{"no verifier", ""},
			{"another verifier", store.RandomToken(32)},
			{"the challenge itself (plain)", challengeOf(f.verifier)},
			{"too short", f.verifier[:42]},
			{"too long", strings.Repeat(f.verifier, 3)},
		}
		for _, c := range cases {
			r := e.redeem(f, func(form url.Values) { form.Set("code_verifier", c.verifier) })
			wantError(t, c.name, r, http.StatusBadRequest, "invalid_grant")
		}
		// The code is bound to its redirect URI too.
		r := e.redeem(f, func(form url.Values) { form.Set("redirect_uri", e.jwt.redirect+"/x") })
		wantError(t, "another redirect_uri", r, http.StatusBadRequest, "invalid_grant")
		// None of these spent the code.
		e.tokens(f)
		// A verifier outside RFC 7636's 43 to 128 characters is refused
		// even when its challenge matches.
		for _, n := range []int{42, 129} {
			v := strings.Repeat("v", n)
			g := e.begin(e.jwt, func(q url.Values) { q.Set("code_challenge", challengeOf(v)) })
			g.verifier = v
			e.issue(g, e.a2, e.mA, "argent")
			wantError(t, fmt.Sprintf("a matching verifier of %d characters", n), e.redeem(g, nil), http.StatusBadRequest, "invalid_grant")
		}
	})
}

func TestReusedCodeRevokesWhatItGave(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		f := e.code(e.jwt)
		_, at := e.tokens(f)
		if r := e.userinfo(at, nil); r.status != http.StatusOK {
			t.Fatalf("userinfo before the replay: %d %v", r.status, r.body)
		}
		wantError(t, "second use", e.redeem(f, nil), http.StatusBadRequest, "invalid_grant")
		wantError(t, "userinfo after the replay", e.userinfo(at, nil), http.StatusUnauthorized, "invalid_token")
		wantError(t, "third use", e.redeem(f, nil), http.StatusBadRequest, "invalid_grant")
	})
}

func TestCodeExpiresAfterSixtySeconds(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		young, old := e.code(e.jwt), e.code(e.jwt)
		e.clock.add(59 * time.Second)
		e.tokens(young)
		e.clock.add(2 * time.Second)
		wantError(t, "a code 61 s old", e.redeem(old, nil), http.StatusBadRequest, "invalid_grant")
	})
}

func TestCodeIsBoundToItsClient(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		f := e.code(e.jwt)
		stolen := *f
		stolen.c = e.basic
		r := e.redeem(&stolen, func(form url.Values) { form.Set("redirect_uri", e.jwt.redirect) })
		wantError(t, "service B redeeming A's code", r, http.StatusBadRequest, "invalid_grant")
		stolen.c = e.post
		r = e.redeem(&stolen, func(form url.Values) { form.Set("redirect_uri", e.jwt.redirect) })
		wantError(t, "service C redeeming A's code", r, http.StatusBadRequest, "invalid_grant")
		// The attempts did not spend it.
		id, _ := e.tokens(f)
		if aud := e.verify(e.jwt, id)["aud"]; aud != e.jwt.svc.ID {
			t.Errorf("aud = %v, want %s", aud, e.jwt.svc.ID)
		}
	})
}

func TestWrongClientCredentialsAreRefused(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		jwt, basic, post := e.code(e.jwt), e.code(e.basic), e.code(e.post)
		withAssertion := func(a string) func(url.Values) {
			return func(form url.Values) {
				form.Set("client_assertion_type", jwtBearer)
				form.Set("client_assertion", a)
			}
		}
		// A valid assertion spent on a request that fails afterwards (an
		// unknown code): its jti is then taken.
		spent := e.assertion(e.jwt, nil, nil)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {"inconnu"}, "redirect_uri": {e.jwt.redirect},
			"code_verifier": {jwt.verifier}}
		withAssertion(spent)(form)
		wantError(t, "an unknown code", e.postToken(form, "", ""), http.StatusBadRequest, "invalid_grant")

		cases := []struct {
			name       string
			f          *flow
			edit       func(url.Values)
			user, pass string
		}{
			{name: "basic, wrong secret", f: basic, user: e.basic.svc.ID, pass: store.RandomToken(32)},
			{name: "basic, another client's secret", f: basic, user: e.basic.svc.ID, pass: e.post.secret},
			{name: "basic client using post", f: basic, edit: func(form url.Values) {
				form.Set("client_id", e.basic.svc.ID)
				form.Set("client_secret", e.basic.secret)
			}},
			{name: "basic client without authentication", f: basic, edit: func(form url.Values) { form.Set("client_id", e.basic.svc.ID) }},
			{name: "post, wrong secret", f: post, edit: func(form url.Values) {
				form.Set("client_id", e.post.svc.ID)
				form.Set("client_secret", store.RandomToken(32))
			}},
			{name: "post client using basic", f: post, user: e.post.svc.ID, pass: e.post.secret},
			{name: "post client without secret", f: post, edit: func(form url.Values) { form.Set("client_id", e.post.svc.ID) }},
			{name: "unknown client", f: post, user: "svc_inconnu", pass: e.post.secret},
			{name: "assertion signed with another key", f: jwt, edit: withAssertion(e.assertion(e.jwt, other, nil))},
			{name: "assertion for another audience", f: jwt, edit: withAssertion(e.assertion(e.jwt, nil, func(c map[string]any) {
				c["aud"] = "https://ailleurs.test.invalid/oidc/token"
			}))},
			{name: "expired assertion (beyond the clock leeway)", f: jwt, edit: withAssertion(e.assertion(e.jwt, nil, func(c map[string]any) {
				c["exp"] = e.clock.now().Add(-jwtverify.Leeway - time.Second).Unix()
			}))},
			{name: "assertion issued in the future", f: jwt, edit: withAssertion(e.assertion(e.jwt, nil, func(c map[string]any) {
				c["iat"] = e.clock.now().Add(time.Minute).Unix()
			}))},
			{name: "assertion not valid yet", f: jwt, edit: withAssertion(e.assertion(e.jwt, nil, func(c map[string]any) {
				c["nbf"] = e.clock.now().Add(time.Minute).Unix()
			}))},
			{name: "assertion expiring in more than 10 minutes", f: jwt, edit: withAssertion(e.assertion(e.jwt, nil, func(c map[string]any) {
				c["exp"] = e.clock.now().Add(11 * time.Minute).Unix()
			}))},
			{name: "assertion without jti", f: jwt, edit: withAssertion(e.assertion(e.jwt, nil, func(c map[string]any) { delete(c, "jti") }))},
			{name: "assertion reused (same jti)", f: jwt, edit: withAssertion(spent)},
			{name: "assertion of another client", f: jwt, edit: withAssertion(e.assertion(e.jwt, nil, func(c map[string]any) {
				c["iss"], c["sub"] = e.basic.svc.ID, e.basic.svc.ID
			}))},
			{name: "assertion whose sub is not iss", f: jwt, edit: withAssertion(e.assertion(e.jwt, nil, func(c map[string]any) {
				c["sub"] = "quelqu-un"
			}))},
			{name: "assertion with a wrong assertion type", f: jwt, edit: func(form url.Values) {
				withAssertion(e.assertion(e.jwt, nil, nil))(form)
				form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			}},
			{name: "private_key_jwt client using a secret", f: jwt, edit: func(form url.Values) {
				form.Set("client_id", e.jwt.svc.ID)
				form.Set("client_secret", e.post.secret)
			}},
		}
		for _, c := range cases {
			form := c.f.form()
			if c.edit != nil {
				c.edit(form)
			}
			r := e.postToken(form, c.user, c.pass)
			wantError(t, c.name, r, http.StatusUnauthorized, "invalid_client")
			if c.user != "" && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("%s: WWW-Authenticate = %q, want the Basic scheme the client used (RFC 6749 §5.2)", c.name, r.header.Get("WWW-Authenticate"))
			}
		}
		// The right credentials still redeem every code.
		for _, f := range []*flow{jwt, basic, post} {
			e.tokens(f)
		}
	})
}

func TestRevocationBitesAtOnce(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, e *env)
	}{
		{"mandate revoked before redemption", func(t *testing.T, e *env) {
			f := e.code(e.jwt)
			e.revoke(e.mA, "")
			wantError(t, "token", e.redeem(f, nil), http.StatusBadRequest, "invalid_grant")
		}},
		{"démarche revoked before redemption", func(t *testing.T, e *env) {
			argent := e.code(e.jwt)
			social := e.begin(e.jwt, nil)
			e.issue(social, e.a2, e.mA, "social")
			e.revoke(e.mA, "argent")
			wantError(t, "token for argent", e.redeem(argent, nil), http.StatusBadRequest, "invalid_grant")
			e.tokens(social) // the démarche still in force still works
		}},
		{"mandate revoked after redemption", func(t *testing.T, e *env) {
			_, at := e.tokens(e.code(e.jwt))
			if r := e.userinfo(at, nil); r.status != http.StatusOK {
				t.Fatalf("userinfo before the revocation: %d %v", r.status, r.body)
			}
			e.revoke(e.mA, "")
			wantError(t, "userinfo", e.userinfo(at, nil), http.StatusUnauthorized, "invalid_token")
		}},
		{"démarche revoked after redemption", func(t *testing.T, e *env) {
			_, at := e.tokens(e.code(e.jwt))
			if r := e.userinfo(at, nil); r.status != http.StatusOK {
				t.Fatalf("userinfo before the revocation: %d %v", r.status, r.body)
			}
			e.revoke(e.mA, "argent")
			wantError(t, "userinfo", e.userinfo(at, nil), http.StatusUnauthorized, "invalid_token")
		}},
		{"mandate expiring between code and token", func(t *testing.T, e *env) {
			// 30 s before the mandate's end, two codes; the mandate ends
			// while the second is still young.
			e.clock.add(e.mA.ExpiresAt.Sub(e.clock.now()) - 30*time.Second)
			before, after := e.code(e.jwt), e.code(e.jwt)
			_, at := e.tokens(before)
			if r := e.userinfo(at, nil); r.status != http.StatusOK {
				t.Fatalf("userinfo before the end: %d %v", r.status, r.body)
			}
			e.clock.add(31 * time.Second)
			wantError(t, "token after the end", e.redeem(after, nil), http.StatusBadRequest, "invalid_grant")
			wantError(t, "userinfo after the end", e.userinfo(at, nil), http.StatusUnauthorized, "invalid_token")
			f := e.begin(e.jwt, nil)
			if _, err := e.p.IssueCode(e.ctx, e.acting(e.a2), f.request, testBinding, e.mA.ID, "argent"); !errors.Is(err, provider.ErrNotEligible) {
				t.Errorf("a code for an expired mandate: err = %v, want ErrNotEligible", err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { each(t, c.run) })
	}
}

func TestTokenEndpointRefusesOtherGrantsAndURLParameters(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	f := e.code(e.basic)
	wantError(t, "refresh_token grant", e.redeem(f, func(form url.Values) { form.Set("grant_type", "refresh_token") }),
		http.StatusBadRequest, "unsupported_grant_type")
	form := f.form()
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.issuer+"/oidc/token?code="+url.QueryEscape(f.code), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(e.basic.svc.ID, e.basic.secret)
	wantError(t, "parameters in the URL", e.do(req), http.StatusBadRequest, "invalid_request")
	e.tokens(f)
}

func TestConcurrentRedemptionsGiveOneToken(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		f := e.code(e.basic)
		body := f.form().Encode()
		statuses := make([]int, 8)
		tokens := make([]string, len(statuses))
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Go(func() {
				req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.issuer+"/oidc/token", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(e.basic.svc.ID, e.basic.secret)
				res, err := e.srv.Client().Do(req)
				if err != nil {
					return
				}
				defer res.Body.Close()
				var out map[string]any
				json.NewDecoder(res.Body).Decode(&out)
				statuses[i] = res.StatusCode
				tokens[i], _ = out["access_token"].(string)
			})
		}
		wg.Wait()
		var won []string
		for i, s := range statuses {
			switch s {
			case http.StatusOK:
				won = append(won, tokens[i])
			case http.StatusBadRequest:
			default:
				t.Errorf("a concurrent redemption got %d", s)
			}
		}
		if len(won) != 1 || e.events(audit.TokenIssued) != 1 {
			t.Fatalf("%d of %d concurrent redemptions got tokens, %d token.issued events; want 1", len(won), len(statuses), e.events(audit.TokenIssued))
		}
		// The others were replays: what the winner got is revoked.
		wantError(t, "userinfo after replays", e.userinfo(won[0], nil), http.StatusUnauthorized, "invalid_token")
	})
}
