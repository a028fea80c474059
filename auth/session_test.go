package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"aidants/audit"
	"aidants/auth"
	"aidants/devidp"
	"aidants/mandate"
	"aidants/org"
	"aidants/store"
	"aidants/store/storetest"
)

// wantSessionEnded asserts that the browser has no principal any more
// because its session was ended (why, when not empty), and that the
// session row says so.
func wantSessionEnded(t *testing.T, e *env, b *browser, why string) {
	t.Helper()
	p, err := b.me()
	var ended *auth.SessionEndedError
	if p != nil || !errors.As(err, &ended) {
		t.Fatalf("/me = %+v, %v; want a *auth.SessionEndedError", p, err)
	}
	if why != "" && ended.Why != why {
		t.Errorf("session ended: %q, want %q", ended.Why, why)
	}
	if open := e.openSessions(t); len(open) != 0 {
		t.Errorf("sessions still open: %+v", open)
	}
	// The cookie was cleared: the next request has no session at all.
	if _, err := b.me(); !errors.Is(err, auth.ErrNoSession) {
		t.Errorf("/me after the end: %v, want ErrNoSession", err)
	}
}

func TestOpenSessionEndsWhenAccessIsWithdrawn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		withdraw func(ctx context.Context, e *env, aidantID string) error
		why      string
	}{
		{"aidant disabled", func(ctx context.Context, e *env, id string) error {
			return e.dir.SetAidantActive(ctx, operator, id, false, "")
		}, "aidant disabled"},
		{"habilitation ended", func(ctx context.Context, e *env, id string) error {
			yesterday := time.Now().In(mandate.Paris).AddDate(0, 0, -1).Format(time.DateOnly)
			return e.dir.Habilitate(ctx, operator, id, yesterday)
		}, "habilitation ended"},
		{"organisation closed", func(ctx context.Context, e *env, _ string) error {
			inactive := false
			_, err := e.dir.UpdateOrganisation(ctx, operator, e.org.ID, org.OrganisationUpdate{Active: &inactive})
			return err
		}, "membership ended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.Each(t, func(t *testing.T, db *store.DB) {
				e := newEnv(t, envOptions{db: db})
				b := e.browser(t)
				b.mustLogin(devidp.SubCamille)
				b.mustMe()

				if err := tc.withdraw(t.Context(), e, e.aidants[devidp.SubCamille].ID); err != nil {
					t.Fatal(err)
				}
				wantSessionEnded(t, e, b, tc.why)
				if s := e.sessions(t); len(s) != 1 || s[0].EndedAt.IsZero() {
					t.Errorf("sessions = %+v, want one with ended_at set", s)
				}
			})
		})
	}
}

func TestSessionEndsAfterIdleTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	b.mustLogin(devidp.SubCamille)

	// Activity within the idle window keeps the session alive, well past
	// one idle period after sign-in.
	for range 3 {
		e.clock.Advance(29 * time.Minute)
		b.mustMe()
	}
	e.clock.Advance(31 * time.Minute)
	wantSessionEnded(t, e, b, "idle timeout")
}

func TestSessionEndsAfterAbsoluteTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	b.mustLogin(devidp.SubCamille)

	// Active every 25 minutes: never idle, alive for 28×25 = 700 minutes.
	for range 28 {
		e.clock.Advance(25 * time.Minute)
		b.mustMe()
	}
	e.clock.Advance(25 * time.Minute) // 725 minutes > 12 h
	wantSessionEnded(t, e, b, "absolute timeout")
}

func TestLogoutEndsSessionServerSide(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	answer := b.mustLogin(devidp.SubCamille)
	p := b.mustMe()
	old := b.sessionCookie()
	if old == nil {
		t.Fatal("no session cookie after sign-in")
	}

	resp, _ := b.do(http.MethodPost, "/logout", url.Values{})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}

	// The provider's end-session endpoint, with the hint and our return.
	e.mu.Lock()
	raw := e.logoutURL
	e.mu.Unlock()
	lu, err := url.Parse(raw)
	if err != nil || raw == "" {
		t.Fatalf("logout URL %q: %v", raw, err)
	}
	if got := lu.Scheme + "://" + lu.Host + lu.Path; got != e.aidantsIdP.Issuer()+"/logout" {
		t.Errorf("logout URL %s, want the provider's end-session endpoint", raw)
	}
	q := lu.Query()
	if q.Get("id_token_hint") != answer.RawIDToken {
		t.Errorf("id_token_hint = %q, want the sign-in's ID token", q.Get("id_token_hint"))
	}
	if q.Get("post_logout_redirect_uri") != e.srv.URL+"/bye" {
		t.Errorf("post_logout_redirect_uri = %q, want %s", q.Get("post_logout_redirect_uri"), e.srv.URL+"/bye")
	}
	// The provider accepts the hint and sends the browser back.
	resp, _ = b.do(http.MethodGet, raw, nil)
	if loc, _ := resp.Location(); resp.StatusCode != http.StatusSeeOther || loc == nil ||
		loc.Scheme+"://"+loc.Host+loc.Path != e.srv.URL+"/bye" {
		t.Errorf("provider logout: %s to %v, want a redirect to /bye", resp.Status, loc)
	}

	if _, err := b.me(); !errors.Is(err, auth.ErrNoSession) {
		t.Errorf("/me after logout: %v, want ErrNoSession", err)
	}
	// Replaying the old cookie by hand gets nothing either: the server
	// ended the session, it did not only forget the cookie.
	thief := e.browser(t)
	u, _ := url.Parse(e.srv.URL)
	thief.jar.SetCookies(u, []*http.Cookie{{Name: old.Name, Value: old.Value, Path: "/"}})
	if p, err := thief.me(); p != nil || err == nil {
		t.Errorf("old cookie after logout: principal %+v, %v; want none", p, err)
	}
	if open := e.openSessions(t); len(open) != 0 {
		t.Errorf("sessions still open after logout: %+v", open)
	}
	ev := e.lastEvent(t, audit.AidantLogout)
	if ev.Aidant != p.AidantID || ev.Organisation != p.OrganisationID {
		t.Errorf("aidant.logout = %s, want Camille in %s", ev.Body, p.OrganisationID)
	}
}

func TestStepUpRefreshesAuthTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	b.mustLogin(devidp.SubCamille)
	before := b.mustMe()

	e.clock.Advance(2 * time.Minute)
	f := b.authenticate("/stepup", devidp.SubCamille)
	if q := f.authorizeURL.Query(); q.Get("prompt") != "login" || q.Get("max_age") != "0" {
		t.Errorf("step-up authorization request %s, want prompt=login and max_age=0", f.authorizeURL)
	}
	if _, err := b.callback(f.callback); err != nil {
		t.Fatalf("step-up: %v", err)
	}

	after := b.mustMe()
	if after.SessionID != before.SessionID {
		t.Errorf("step-up changed the session %s → %s", before.SessionID, after.SessionID)
	}
	if d := after.AuthTime.Sub(before.AuthTime); d < time.Minute {
		t.Errorf("auth_time moved by %v after a step-up two minutes later", d)
	}
	if !after.FreshFor(e.svc.StepUpMaxAge(), e.clock.Now()) {
		t.Errorf("auth_time %v not fresh at %v", after.AuthTime, e.clock.Now())
	}
	ev := e.lastEvent(t, audit.AidantStepUp)
	if ev.Aidant != after.AidantID {
		t.Errorf("aidant.step_up = %s, want Camille", ev.Body)
	}
}

func TestStepUpByAnotherPersonIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	b.mustLogin(devidp.SubCamille)
	before := b.mustMe()

	e.clock.Advance(2 * time.Minute)
	f := b.authenticate("/stepup", subMorgan)
	_, err := b.callback(f.callback)
	wantRefused(t, err, auth.ReasonOtherPerson)

	after := b.mustMe()
	if after.AidantID != before.AidantID || !after.AuthTime.Equal(before.AuthTime) {
		t.Errorf("after a refused step-up: %s auth_time %v, want %s auth_time %v unchanged",
			after.AidantID, after.AuthTime, before.AidantID, before.AuthTime)
	}
	if n := len(e.events(t, audit.AidantStepUp)); n != 0 {
		t.Errorf("%d aidant.step_up events, want none", n)
	}
	ev := e.lastEvent(t, audit.AidantLoginRefused)
	if ev.Reason != auth.ReasonOtherPerson || ev.Aidant != before.AidantID {
		t.Errorf("aidant.login_refused = %s, want reason other_person naming Camille", ev.Body)
	}
}

func TestNewSignInEndsPreviousSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	b.mustLogin(devidp.SubCamille)
	first := b.mustMe()
	old := b.sessionCookie()

	b.mustLogin(devidp.SubCamille)
	second := b.mustMe()
	if second.SessionID == first.SessionID {
		t.Fatal("a new sign-in kept the session id")
	}
	if c := b.sessionCookie(); c == nil || c.Value == old.Value {
		t.Error("a new sign-in kept the session cookie")
	}

	rows := e.sessions(t)
	if len(rows) != 2 {
		t.Fatalf("sessions = %+v, want 2", rows)
	}
	for _, r := range rows {
		switch r.ID {
		case first.SessionID:
			if r.EndedAt.IsZero() {
				t.Error("the previous session is still open")
			}
		case second.SessionID:
			if !r.EndedAt.IsZero() {
				t.Error("the new session is ended")
			}
		default:
			t.Errorf("unexpected session %s", r.ID)
		}
	}

	// Whoever kept the old cookie has nothing.
	thief := e.browser(t)
	u, _ := url.Parse(e.srv.URL)
	thief.jar.SetCookies(u, []*http.Cookie{{Name: old.Name, Value: old.Value, Path: "/"}})
	if p, err := thief.me(); p != nil || err == nil {
		t.Errorf("old cookie: principal %+v, %v; want none", p, err)
	}
}
