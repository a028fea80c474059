package auth_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"aidants/audit"
	"aidants/auth"
	"aidants/devidp"
)

// wantClaimsError asserts err is a *auth.ClaimsError with that reason and
// returns it.
func wantClaimsError(t *testing.T, err error, reason string) *auth.ClaimsError {
	t.Helper()
	var ce *auth.ClaimsError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *auth.ClaimsError (%s)", err, reason)
	}
	if ce.Reason != reason {
		t.Fatalf("reason = %q, want %q (%v)", ce.Reason, reason, err)
	}
	return ce
}

// logLines returns the service's log lines that contain every part.
func (e *env) logLines(parts ...string) []string {
	var out []string
	for line := range strings.Lines(e.logs.String()) {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

func TestSecondFactorIsAnyAMRValueListedOrAnACRListed(t *testing.T) {
	t.Parallel()
	const acr2FA = "https://proconnect.gouv.fr/assurance/consistency-checked-2fa"
	for _, tc := range []struct {
		name      string
		amrs      []string // mfa_amrs
		acrs      []string // mfa_acrs
		sent      []string // the amr the provider sends (nil: none)
		acr       string   // the acr it sends
		ok        bool
		wantInLog string
	}{
		{name: "mfa by default", amrs: []string{"mfa"}, sent: []string{"pwd", "mfa"}, ok: true},
		{name: "otp not listed", amrs: []string{"mfa"}, sent: []string{"pwd", "otp"}, wantInLog: `amr="[pwd otp]"`},
		{name: "otp listed", amrs: []string{"otp", "hwk"}, sent: []string{"pwd", "otp"}, ok: true},
		{name: "hardware key listed", amrs: []string{"otp", "hwk"}, sent: []string{"hwk"}, ok: true},
		{name: "sms listed, password alone", amrs: []string{"sms"}, sent: []string{"pwd"}, wantInLog: "amr=[pwd]"},
		{name: "no amr", amrs: []string{"mfa"}, wantInLog: "missing=[amr]"},
		{name: "acr listed", amrs: []string{"mfa"}, acrs: []string{acr2FA}, sent: []string{"pwd"}, acr: acr2FA, ok: true},
		{name: "acr not listed", amrs: []string{"mfa"}, acrs: []string{acr2FA}, sent: []string{"pwd"}, acr: "eidas1", wantInLog: `acr=eidas1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{aidantsRP: func(c *auth.ProviderConfig) { c.MFAAMRs, c.MFAACRs = tc.amrs, tc.acrs }})
			e.aidantsIdP.SetTweak(func(tw *devidp.TokenTweak) {
				delete(tw.Claims, "amr")
				if tc.sent != nil {
					tw.Claims["amr"] = tc.sent
				}
				if tc.acr != "" {
					tw.Claims["acr"] = tc.acr
				}
			})
			_, res := e.browser(t).login(devidp.SubCamille)
			if tc.ok {
				if res.err != nil {
					t.Fatalf("sign-in refused: %v", res.err)
				}
				if !res.answer.MFA || len(e.openSessions(t)) != 1 {
					t.Errorf("MFA %v, %d sessions", res.answer.MFA, len(e.openSessions(t)))
				}
				return
			}
			if !errors.Is(res.err, auth.ErrMFARequired) {
				t.Fatalf("err = %v, want ErrMFARequired", res.err)
			}
			wantClaimsError(t, res.err, "mfa_required")
			if s := e.sessions(t); len(s) != 0 {
				t.Errorf("sessions = %+v, want none", s)
			}
			if ev := e.lastEvent(t, audit.AidantLoginRefused); ev.Reason != "mfa_required" {
				t.Errorf("aidant.login_refused = %s", ev.Body)
			}
			if lines := e.logLines("sign-in refused", "reason=mfa_required", tc.wantInLog); len(lines) != 1 {
				t.Errorf("no log line with %q in:\n%s", tc.wantInLog, e.logs)
			}
		})
	}
}

func TestACRLowerThanAskedIsRefusedAtBothProviders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{acr: "eidas2"})
	for _, p := range []struct {
		name  string
		idp   *devidp.Provider
		start string
		sub   string
	}{
		{"aidants", e.aidantsIdP, "/start", devidp.SubCamille},
		{"franceconnect", e.fcIdP, "/startfc", devidp.SubJosephine},
	} {
		for _, tc := range []struct {
			name string
			acr  any // what the provider sends; nil: no acr
			ok   bool
			log  string
		}{
			{"eidas2 as asked", "eidas2", true, ""},
			{"eidas3, higher", "eidas3", true, ""},
			{"eidas1, lower", "eidas1", false, "acr=eidas1"},
			{"no acr", nil, false, "missing=[acr]"},
			{"an unknown level", "eidas9", false, "acr=eidas9"},
			{"not a string", 3, false, "missing=[acr]"},
		} {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				p.idp.SetTweak(func(tw *devidp.TokenTweak) {
					delete(tw.Claims, "acr")
					if tc.acr != nil {
						tw.Claims["acr"] = tc.acr
					}
				})
				defer p.idp.SetTweak(nil)
				b := e.browser(t)
				before := len(e.openSessions(t))
				_, err := b.callback(b.authenticate(p.start, p.sub).callback)
				if tc.ok {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					return
				}
				if !errors.Is(err, auth.ErrBadToken) {
					t.Fatalf("err = %v, want ErrBadToken", err)
				}
				ce := wantClaimsError(t, err, "acr_not_met")
				if ce.Want != `acr_values "eidas2"` || ce.Provider != auth.Provider(p.name) {
					t.Errorf("refusal = %+v", ce)
				}
				if n := len(e.openSessions(t)); n != before {
					t.Errorf("%d new sessions", n-before)
				}
				if len(e.logLines("sign-in refused", "provider="+p.name, "reason=acr_not_met", tc.log, `want="acr_values \"eidas2\""`)) == 0 {
					t.Errorf("no log line with %s in:\n%s", tc.log, e.logs)
				}
			})
		}
	}
}

func TestFranceConnectRequireMFAIsAnACRListed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{fcRP: func(c *auth.ProviderConfig) { c.RequireMFA, c.MFAACRs = true, []string{"eidas2", "eidas3"} }})
	b := e.browser(t)
	_, err := b.callback(b.authenticate("/startfc", devidp.SubJosephine).callback)
	if !errors.Is(err, auth.ErrBadToken) {
		t.Fatalf("err = %v, want ErrBadToken", err)
	}
	ce := wantClaimsError(t, err, "mfa_required")
	if ce.Got["acr"] != "eidas1" || ce.Provider != auth.FranceConnect {
		t.Errorf("refusal = %+v", ce)
	}
	e.fcIdP.SetTweak(func(tw *devidp.TokenTweak) { tw.Claims["acr"] = "eidas2" })
	b = e.browser(t)
	if _, err := b.callback(b.authenticate("/startfc", devidp.SubJosephine).callback); err != nil {
		t.Fatalf("eidas2: %v", err)
	}
}

func TestPendingAidantIsMatchedByEmailOnlyWhenTheProviderVerifiedIt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		verified     any  // email_verified sent; nil: absent
		mustVerify   bool // match_email_requires_verified
		bound        bool
		logsVerified string
	}{
		{"verified", true, true, true, ""},
		{"verified as a string", "true", true, true, ""},
		{"not verified", false, true, false, "email_verified=false"},
		{"said nothing", nil, true, false, "email_verified=absent"},
		{"said something else", "yes", true, false, `email_verified="not a boolean"`},
		{"said nothing, operator trusts the provider", nil, false, true, ""},
		{"not verified, operator trusts the provider", false, false, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{aidantsRP: func(c *auth.ProviderConfig) { c.MatchEmailRequiresVerified = tc.mustVerify }})
			set := func(claims map[string]any) {
				delete(claims, "email_verified")
				if tc.verified != nil {
					claims["email_verified"] = tc.verified
				}
			}
			e.aidantsIdP.SetTweaks(devidp.Tweaks{
				IDToken:  func(tw *devidp.TokenTweak) { set(tw.Claims) },
				Userinfo: func(tw *devidp.TokenTweak) { set(tw.Claims) },
			})
			camille := e.aidants[devidp.SubCamille]
			_, res := e.browser(t).login(devidp.SubCamille)
			a, err := e.dir.Aidant(t.Context(), camille.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tc.bound {
				if res.err != nil || a.Pending() {
					t.Fatalf("sign-in: %v; pending %v", res.err, a.Pending())
				}
				return
			}
			wantRefused(t, res.err, auth.ReasonUnknown)
			if !a.Pending() {
				t.Errorf("the account was bound to (%q, %q)", a.Issuer, a.Subject)
			}
			if ev := e.lastEvent(t, audit.AidantLoginRefused); ev.Aidant != "" || ev.Actor.ID != "unknown" {
				t.Errorf("refusal event names an aidant: %s", ev.Body)
			}
			if len(e.logLines("sign-in refused", "reason=unknown_account", tc.logsVerified)) != 1 {
				t.Errorf("no log line with %s in:\n%s", tc.logsVerified, e.logs)
			}
			if strings.Contains(e.logs.String(), devidp.EmailCamille) {
				t.Errorf("the log holds the address:\n%s", e.logs)
			}
		})
	}
}

func TestBoundAidantSignsInWhateverEmailVerifiedSays(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.browser(t).mustLogin(devidp.SubCamille) // binds (issuer, sub)
	e.aidantsIdP.SetTweaks(devidp.Tweaks{
		IDToken:  func(tw *devidp.TokenTweak) { tw.Claims["email_verified"] = false },
		Userinfo: func(tw *devidp.TokenTweak) { tw.Claims["email_verified"] = false },
	})
	e.browser(t).mustLogin(devidp.SubCamille)
}

func TestRequireMFAWithNothingThatCountsIsAConfigurationError(t *testing.T) {
	t.Parallel()
	defer func() {
		if v := recover(); v != nil {
			t.Fatalf("panic: %v", v)
		}
	}()
	for _, p := range []string{"aidants", "franceconnect"} {
		_, err := auth.New(auth.Config{
			SessionSecret: []byte("0123456789abcdef0123456789abcdef-test"),
			AidantsRP:     auth.ProviderConfig{RequireMFA: p == "aidants"},
			FranceConnect: auth.ProviderConfig{RequireMFA: p == "franceconnect"},
		}, nil, nil)
		if err == nil || !strings.Contains(err.Error(), p+": a second factor is required but no amr or acr value counts as one") {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestIDTokenWithoutSubIsRefusedWhenNoUserinfoWouldCatchIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.aidantsIdP.SetTweaks(devidp.Tweaks{Discovery: func(doc map[string]any) { delete(doc, "userinfo_endpoint") }})
	e.browser(t).mustLogin(devidp.SubCamille) // the ID token's claims are enough
	e.aidantsIdP.SetTweaks(devidp.Tweaks{IDToken: func(tw *devidp.TokenTweak) { delete(tw.Claims, "sub") }})
	_, res := e.browser(t).login(devidp.SubCamille)
	if ce := wantClaimsError(t, res.err, "claims_missing"); len(ce.Missing) != 1 || ce.Missing[0] != "sub" {
		t.Errorf("refusal = %+v, want sub missing", ce)
	}
}

func TestSignedUserinfoIsVerifiedThenMerged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	sign := func(edit func(c map[string]any)) {
		e.fcIdP.SetTweaks(devidp.Tweaks{
			// The ID token carries no identity: it must come from userinfo.
			IDToken: func(tw *devidp.TokenTweak) { delete(tw.Claims, "given_name"); delete(tw.Claims, "birthdate") },
			Userinfo: func(tw *devidp.TokenTweak) {
				tw.Claims["iss"], tw.Claims["aud"] = e.fcIdP.Issuer(), fcClient
				edit(tw.Claims)
				tw.Alg = "ES256"
			},
		})
	}
	fc := func() (*auth.Answer, error) {
		b := e.browser(t)
		_, err := b.callback(b.authenticate("/startfc", devidp.SubJosephine).callback)
		return e.lastResult().answer, err
	}
	sign(func(map[string]any) {})
	a, err := fc()
	if err != nil {
		t.Fatalf("signed userinfo refused: %v", err)
	}
	if a.Claim("given_name") != "Joséphine Marie" || a.Claim("birthdate") != "1948-03-12" {
		t.Errorf("claims = %v, want the signed userinfo's", a.Claims)
	}
	for name, edit := range map[string]func(map[string]any){
		"expired":            func(c map[string]any) { c["exp"] = e.clock.Now().Add(-time.Hour).Unix() },
		"issued in a while":  func(c map[string]any) { c["iat"] = e.clock.Now().Add(time.Hour).Unix() },
		"for another client": func(c map[string]any) { c["aud"] = aidantsClient },
		"no issuer":          func(c map[string]any) { delete(c, "iss") },
	} {
		sign(edit)
		if _, err := fc(); !errors.Is(err, auth.ErrBadToken) {
			t.Errorf("%s: err = %v, want ErrBadToken", name, err)
		}
	}
	e.fcIdP.SetTweaks(devidp.Tweaks{Userinfo: func(tw *devidp.TokenTweak) { tw.Alg = "HS256" }})
	if _, err := fc(); !errors.Is(err, auth.ErrBadToken) {
		t.Errorf("HS256 userinfo: err = %v, want ErrBadToken", err)
	}
}

// TestProviderOutageIsNotARefusal takes the provider's endpoints down one
// at a time: the answer is the provider's unavailability (503), never a
// refusal of the person's sign-in; nothing is opened nor journaled, and
// the same sign-in succeeds once the provider is back.
func TestProviderOutageIsNotARefusal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		path   string                   // taken down (503)
		tweaks func(*env) devidp.Tweaks // what else the provider does
	}{
		{name: "token endpoint down", path: "/dev/aidants/token"},
		{name: "userinfo down", path: "/dev/aidants/userinfo"},
		// A new service knows no key yet: go-oidc must fetch the key set.
		{name: "key set down", path: "/dev/aidants/jwks"},
		{name: "key set not JSON", tweaks: func(*env) devidp.Tweaks {
			return devidp.Tweaks{JWKS: func([]byte) []byte { return []byte("<html>maintenance</html>") }}
		}},
		{name: "key set down under a signed userinfo", path: "/dev/aidants/jwks", tweaks: func(e *env) devidp.Tweaks {
			return devidp.Tweaks{Userinfo: func(tw *devidp.TokenTweak) {
				tw.Claims["iss"], tw.Claims["aud"], tw.Alg = e.aidantsIdP.Issuer(), aidantsClient, "ES256"
			}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			if tc.tweaks != nil {
				e.aidantsIdP.SetTweaks(tc.tweaks(e))
			}
			if tc.path != "" {
				e.down.Store(tc.path, true)
			}
			b := e.browser(t)
			f := b.authenticate("/start", devidp.SubCamille)
			if tc.name == "key set down under a signed userinfo" {
				// The ID token's key is known by now; only the userinfo's
				// verification needs the key set.
				e.down.Delete(tc.path)
				e.browser(t).mustLogin(devidp.SubCamille)
				e.down.Store(tc.path, true)
				f = b.authenticate("/start", devidp.SubCamille)
			}
			events := len(e.events(t, ""))
			sessions := len(e.sessions(t))
			_, err := b.callback(f.callback)
			if !errors.Is(err, auth.ErrProviderUnavailable) || errors.Is(err, auth.ErrBadToken) {
				t.Fatalf("err = %v, want ErrProviderUnavailable only", err)
			}
			if len(e.events(t, "")) != events || len(e.sessions(t)) != sessions {
				t.Errorf("an outage journaled or opened something")
			}
			e.down.Delete(tc.path)
			e.aidantsIdP.SetTweaks(devidp.Tweaks{})
			b.mustLogin(devidp.SubCamille)
		})
	}
}
