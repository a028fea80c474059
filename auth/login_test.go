package auth_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"aidants/audit"
	"aidants/auth"
	"aidants/devidp"
	"aidants/store"
)

func TestPendingAidantFirstSignInBindsIdentityAndOpensSession(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		tls        bool
		cookieName string
	}{
		{"plain-http", false, "aidants-session"},
		{"secure", true, "__Host-aidants-session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{tls: tc.tls})
			camille := e.aidants[devidp.SubCamille]
			if pending, _ := e.dir.Aidant(t.Context(), camille.ID); !pending.Pending() {
				t.Fatal("Camille should be pending before her first sign-in")
			}

			b := e.browser(t)
			resp, res := b.login(devidp.SubCamille)
			if res.err != nil {
				t.Fatalf("sign-in: %v", res.err)
			}

			bound, err := e.dir.Aidant(t.Context(), camille.ID)
			if err != nil {
				t.Fatal(err)
			}
			if bound.Issuer != e.aidantsIdP.Issuer() || bound.Subject != devidp.SubCamille {
				t.Errorf("bound identity = (%q, %q), want (%q, %q)", bound.Issuer, bound.Subject, e.aidantsIdP.Issuer(), devidp.SubCamille)
			}

			p := b.mustMe()
			if p.GivenName != "Camille" || p.FamilyName != "Martin" || p.AidantID != camille.ID || p.OrganisationID != e.org.ID {
				t.Errorf("principal = %+v, want Camille Martin of %s", p, e.org.ID)
			}

			ev := e.lastEvent(t, audit.AidantLogin)
			if ev.Aidant != camille.ID || ev.Organisation != e.org.ID || ev.Actor.ID != camille.ID {
				t.Errorf("aidant.login = %s, want Camille in %s", ev.Body, e.org.ID)
			}

			var session *http.Cookie
			for _, raw := range resp.Header.Values("Set-Cookie") {
				c, err := http.ParseSetCookie(raw)
				if err != nil {
					t.Fatalf("Set-Cookie %q: %v", raw, err)
				}
				if c.Name == tc.cookieName {
					session = c
					if !strings.Contains(raw, "HttpOnly") || !strings.Contains(raw, "SameSite=Lax") {
						t.Errorf("session Set-Cookie %q lacks HttpOnly or SameSite=Lax", raw)
					}
					if tc.tls != strings.Contains(raw, "; Secure") {
						t.Errorf("session Set-Cookie %q: Secure should be %v", raw, tc.tls)
					}
					if c.Path != "/" || c.Domain != "" {
						t.Errorf("session Set-Cookie %q: want Path=/ and no Domain", raw)
					}
				}
			}
			if session == nil {
				t.Fatalf("no %s cookie in %q", tc.cookieName, resp.Header.Values("Set-Cookie"))
			}
		})
	}
}

func TestSuccessfulLoginAuditHoldsNoTokenCodeOrState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	f := b.authenticate("/start", devidp.SubCamille)
	if _, err := b.callback(f.callback); err != nil {
		t.Fatal(err)
	}
	a := e.lastResult().answer
	cb, _ := url.Parse(f.callback)
	secrets := map[string]string{
		"ID token":      a.RawIDToken,
		"ID token body": strings.Split(a.RawIDToken, ".")[1],
		"code":          cb.Query().Get("code"),
		"state":         cb.Query().Get("state"),
		"nonce":         a.IDToken.Nonce,
	}
	evs := e.events(t, "")
	if len(evs) == 0 {
		t.Fatal("no audit events")
	}
	for _, ev := range evs {
		for what, v := range secrets {
			if v == "" {
				t.Fatalf("test bug: empty %s", what)
			}
			if strings.Contains(ev.Body, v) {
				t.Errorf("%s event holds the %s: %s", ev.Type, what, ev.Body)
			}
		}
	}
}

func TestSignInWithoutMFAIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	_, res := b.login(devidp.SubDominique)
	if !errors.Is(res.err, auth.ErrMFARequired) {
		t.Fatalf("err = %v, want ErrMFARequired", res.err)
	}
	if s := e.sessions(t); len(s) != 0 {
		t.Errorf("sessions = %+v, want none", s)
	}
	if _, err := b.me(); !errors.Is(err, auth.ErrNoSession) {
		t.Errorf("/me err = %v, want ErrNoSession", err)
	}
	if ev := e.lastEvent(t, audit.AidantLoginRefused); ev.Reason != "mfa_required" {
		t.Errorf("aidant.login_refused = %s, want reason mfa_required", ev.Body)
	}
}

func TestSignInOfUnusableAccountIsRefusedAndAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name, sub, reason string
		namesAidant       bool
	}{
		{"unknown account", subStranger, auth.ReasonUnknown, false},
		{"disabled", devidp.SubSacha, auth.ReasonDisabled, true},
		{"habilitation expired", devidp.SubAlex, auth.ReasonNotHabilitated, true},
		{"no active organisation", subMorgan, auth.ReasonNoOrganisation, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser(t)
			before := len(e.events(t, audit.AidantLoginRefused))
			_, res := b.login(tc.sub)
			wantRefused(t, res.err, tc.reason)
			if _, err := b.me(); !errors.Is(err, auth.ErrNoSession) {
				t.Errorf("/me err = %v, want ErrNoSession", err)
			}
			if s := e.sessions(t); len(s) != 0 {
				t.Errorf("sessions = %+v, want none", s)
			}
			evs := e.events(t, audit.AidantLoginRefused)
			if len(evs) != before+1 {
				t.Fatalf("%d new aidant.login_refused events, want 1", len(evs)-before)
			}
			ev := evs[len(evs)-1]
			if ev.Reason != tc.reason {
				t.Errorf("event = %s, want reason %s", ev.Body, tc.reason)
			}
			if tc.namesAidant {
				want := e.aidants[tc.sub].ID
				if ev.Aidant != want || ev.AidantID != want {
					t.Errorf("event = %s (aidant_id %q), want it to name aidant %s", ev.Body, ev.AidantID, want)
				}
				// The refused sign-in binds nothing: the account stays pending.
				if a, _ := e.dir.Aidant(t.Context(), want); !a.Pending() {
					t.Errorf("a refused sign-in bound the account to (%q, %q)", a.Issuer, a.Subject)
				}
			} else if ev.Aidant != "" || ev.AidantID != "" || ev.Actor.ID != "unknown" {
				t.Errorf("event of an unknown account = %s (aidant_id %q), want no aidant named", ev.Body, ev.AidantID)
			}
		})
	}
}

func TestCallbackWithTamperedStateIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	f := b.authenticate("/start", devidp.SubCamille)
	_, err := b.callback(withQuery(t, f.callback, "state", "AAAA"+strings.Repeat("x", 28)))
	if !errors.Is(err, auth.ErrBadCallback) {
		t.Fatalf("err = %v, want ErrBadCallback", err)
	}
	if s := e.sessions(t); len(s) != 0 {
		t.Errorf("sessions = %+v, want none", s)
	}
}

func TestReplayedCallbackIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	f := b.authenticate("/start", devidp.SubCamille)
	if _, err := b.callback(f.callback); err != nil {
		t.Fatalf("first callback: %v", err)
	}
	if _, err := b.callback(f.callback); !errors.Is(err, auth.ErrBadCallback) {
		t.Fatalf("replayed callback: err = %v, want ErrBadCallback", err)
	}
	if s := e.sessions(t); len(s) != 1 {
		t.Errorf("%d sessions after a replay, want 1", len(s))
	}
	if n := len(e.events(t, audit.AidantLogin)); n != 1 {
		t.Errorf("%d aidant.login events, want 1", n)
	}
}

func TestCallbackInAnotherBrowserIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	f := e.browser(t).authenticate("/start", devidp.SubCamille)
	other := e.browser(t)
	if _, err := other.callback(f.callback); !errors.Is(err, auth.ErrBadCallback) {
		t.Fatalf("err = %v, want ErrBadCallback", err)
	}
	if s := e.sessions(t); len(s) != 0 {
		t.Errorf("sessions = %+v, want none", s)
	}
	if _, err := other.me(); !errors.Is(err, auth.ErrNoSession) {
		t.Errorf("/me in the other browser: %v, want ErrNoSession", err)
	}
}

func TestIDTokenThatDoesNotVerifyIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name  string
		tweak func(*devidp.TokenTweak)
	}{
		{"wrong nonce", func(tw *devidp.TokenTweak) { tw.Claims["nonce"] = "not-the-nonce-of-this-request" }},
		{"expired", func(tw *devidp.TokenTweak) {
			now := e.clock.Now()
			tw.Claims["iat"] = now.Add(-2 * time.Hour).Unix()
			tw.Claims["exp"] = now.Add(-time.Hour).Unix()
		}},
		{"unsigned", func(tw *devidp.TokenTweak) { tw.Alg = "none" }},
		{"HS256 with the client secret", func(tw *devidp.TokenTweak) { tw.Alg = "HS256" }},
		{"other audience", func(tw *devidp.TokenTweak) { tw.Claims["aud"] = fcClient }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.aidantsIdP.SetTweak(tc.tweak)
			defer e.aidantsIdP.SetTweak(nil)
			_, res := e.browser(t).login(devidp.SubCamille)
			if !errors.Is(res.err, auth.ErrBadToken) {
				t.Fatalf("err = %v, want ErrBadToken", res.err)
			}
			if s := e.sessions(t); len(s) != 0 {
				t.Errorf("sessions = %+v, want none", s)
			}
		})
	}
	// The same flow without a tweak succeeds: the refusals above are the
	// tweaks' doing.
	e.browser(t).mustLogin(devidp.SubCamille)
}

func TestAnswerMeantForTheOtherProviderIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})

	t.Run("aidants answer on the FranceConnect callback", func(t *testing.T) {
		b := e.browser(t)
		f := b.authenticate("/start", devidp.SubCamille)
		fc := strings.Replace(f.callback, "/cb/aidants?", "/cb/fc?", 1)
		if fc == f.callback {
			t.Fatalf("test bug: callback %s", f.callback)
		}
		if _, err := b.callback(fc); !errors.Is(err, auth.ErrBadCallback) {
			t.Fatalf("err = %v, want ErrBadCallback", err)
		}
	})

	t.Run("iss parameter names the other issuer", func(t *testing.T) {
		b := e.browser(t)
		f := b.authenticate("/start", devidp.SubCamille)
		if _, err := b.callback(withQuery(t, f.callback, "iss", e.fcIdP.Issuer())); !errors.Is(err, auth.ErrBadToken) {
			t.Fatalf("err = %v, want ErrBadToken", err)
		}
	})

	t.Run("ID token from the other issuer", func(t *testing.T) {
		e.aidantsIdP.SetTweak(func(tw *devidp.TokenTweak) { tw.Claims["iss"] = e.fcIdP.Issuer() })
		defer e.aidantsIdP.SetTweak(nil)
		_, res := e.browser(t).login(devidp.SubCamille)
		if !errors.Is(res.err, auth.ErrBadToken) {
			t.Fatalf("err = %v, want ErrBadToken", res.err)
		}
	})

	if s := e.sessions(t); len(s) != 0 {
		t.Errorf("sessions = %+v, want none", s)
	}
}

func TestLocalPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/a", true},
		{"/mandats/nouveau?x=1", true},
		{"/", true},
		{"//evil", false},
		{"//evil.example/a", false},
		{"/\\evil", false},
		{"https://x", false},
		{"", false},
		{"a", false},
		{"/a\r\nSet-Cookie: x=1", false},
	} {
		if got := auth.LocalPath(tc.path); got != tc.ok {
			t.Errorf("LocalPath(%q) = %v, want %v", tc.path, got, tc.ok)
		}
	}
}

// pendingCookies returns the browser's cookies of pending sign-ins.
func (b *browser) pendingCookies() []*http.Cookie {
	u, _ := url.Parse(b.e.srv.URL)
	var out []*http.Cookie
	for _, c := range b.jar.Cookies(u) {
		if strings.Contains(c.Name, "aidants-connexion-") {
			out = append(out, c)
		}
	}
	return out
}

// TestStartingASignInWritesNothing: leaving for a provider is anonymous,
// so it costs no write (the journal's writer runs no unit); the pending
// sign-ins live sealed in the browser, at most four at a time, the oldest
// forgotten first.
func TestStartingASignInWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	units := e.log.Stats().Units.Load()
	var first flow
	for i := range 6 {
		if i == 0 {
			first = b.authenticate("/start", devidp.SubCamille)
			continue
		}
		resp, body := b.do(http.MethodGet, "/start", nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("start %d: %s %s", i, resp.Status, body)
		}
		if i == 2 {
			b.do(http.MethodGet, "/startfc", nil)
		}
	}
	if n := e.log.Stats().Units.Load() - units; n != 0 {
		t.Errorf("starting 7 sign-ins ran %d units on the writer, want none", n)
	}
	if got := b.pendingCookies(); len(got) != 4 {
		t.Errorf("%d pending sign-ins kept in the browser, want 4", len(got))
	}
	for _, c := range b.pendingCookies() {
		if strings.Contains(c.Value, devidp.SubCamille) || len(c.Value) > 1500 {
			t.Errorf("pending sign-in cookie %s is readable or too long (%d bytes)", c.Name, len(c.Value))
		}
	}
	// The first one was forgotten: its answer finds nothing to complete.
	if _, err := b.callback(first.callback); !errors.Is(err, auth.ErrBadCallback) {
		t.Fatalf("the answer to a forgotten sign-in: %v, want ErrBadCallback", err)
	}
	b.mustLogin(devidp.SubCamille)
}

// TestReplayWithTheSealedCookieKeptIsRefused replays a callback with the
// sealed pending sign-in put back (copied before, or a browser that did
// not drop it): the record that it was used refuses it, before the code
// is offered to the provider again.
func TestReplayWithTheSealedCookieKeptIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	f := b.authenticate("/start", devidp.SubCamille)
	kept := b.pendingCookies()
	if len(kept) != 1 {
		t.Fatalf("%d pending sign-in cookies, want 1", len(kept))
	}
	if _, err := b.callback(f.callback); err != nil {
		t.Fatalf("first callback: %v", err)
	}
	if len(b.pendingCookies()) != 0 {
		t.Error("the pending sign-in cookie outlived its callback")
	}
	tokens := e.tokenRequests.Load()
	u, _ := url.Parse(e.srv.URL)
	b.jar.SetCookies(u, kept)
	if _, err := b.callback(f.callback); !errors.Is(err, auth.ErrBadCallback) {
		t.Fatalf("replay with the sealed cookie: %v, want ErrBadCallback", err)
	}
	if n := e.tokenRequests.Load() - tokens; n != 0 {
		t.Errorf("the replay reached the provider's token endpoint %d times", n)
	}
	if s := e.sessions(t); len(s) != 1 {
		t.Errorf("%d sessions after a replay, want 1", len(s))
	}

	// A sealed value moved under another state's name does not open.
	f2 := b.authenticate("/start", devidp.SubCamille)
	other := b.pendingCookies()[0]
	b.jar.SetCookies(u, []*http.Cookie{{Name: other.Name, Value: "", MaxAge: -1}})
	newState := "AAAA" + strings.Repeat("y", 28)
	moved := withQuery(t, f2.callback, "state", newState)
	b.jar.SetCookies(u, []*http.Cookie{{Name: other.Name[:len(other.Name)-16] + store.Hash(newState)[:16], Value: other.Value}})
	if _, err := b.callback(moved); !errors.Is(err, auth.ErrBadCallback) {
		t.Fatalf("a sealed sign-in under another name: %v, want ErrBadCallback", err)
	}
}

// TestSweepDeletesExpiredRecordsOnly: the records that sign-ins were used
// go once the sealed values they guard have expired, and a sweep with
// nothing to delete writes nothing.
func TestSweepDeletesExpiredRecordsOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.browser(t).mustLogin(devidp.SubCamille)
	spent := func() int {
		var n int
		if err := e.db.R.Get(&n, `SELECT COUNT(*) FROM spent_requests`); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := spent(); n != 1 {
		t.Fatalf("%d records of used sign-ins, want 1", n)
	}
	units := e.log.Stats().Units.Load()
	if err := e.svc.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := spent(); n != 1 {
		t.Errorf("a sweep deleted a record still needed: %d left", n)
	}
	if n := e.log.Stats().Units.Load() - units; n != 0 {
		t.Errorf("a sweep with nothing to delete ran %d units", n)
	}
	e.clock.Advance(11 * time.Minute)
	if err := e.svc.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := spent(); n != 0 {
		t.Errorf("%d expired records left after a sweep", n)
	}
}
