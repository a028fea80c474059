package auth_test

import (
	"errors"
	"net/http"
	"regexp"
	"testing"

	"aidants/auth"
	"aidants/auth/hostileidp"
	"aidants/devidp"
)

// side is one of the service's two callbacks, as the attacks need it.
type side struct {
	name        string
	provider    auth.Provider
	start, cb   string // the routes that begin a sign-in and take the answer
	sub         string // who signs in there
	idp         *devidp.Provider
	client      string
	other       *devidp.Provider
	otherClient string
}

func (e *env) sides() []side {
	return []side{
		{"aidants", auth.Aidants, "/start", "/cb/aidants", devidp.SubCamille, e.aidantsIdP, aidantsClient, e.fcIdP, fcClient},
		{"franceconnect", auth.FranceConnect, "/startfc", "/cb/fc", devidp.SubJosephine, e.fcIdP, fcClient, e.aidantsIdP, aidantsClient},
	}
}

func (e *env) side(p *devidp.Provider) side {
	for _, s := range e.sides() {
		if s.idp == p {
			return s
		}
	}
	panic("unknown provider")
}

// arena is the attacks' view of the harness, for the callback of s, the
// victim's browser being victim.
func (e *env) arena(t *testing.T, s side, victim *browser) *hostileidp.Arena {
	return &hostileidp.Arena{
		Target: s.idp, Other: s.other, Client: s.client, OtherClient: s.otherClient,
		Answer: func(p *devidp.Provider) string {
			o := e.side(p)
			return victim.authenticate(o.start, o.sub).callback
		},
		AttackerAnswer: func(p *devidp.Provider) string {
			o := e.side(p)
			return e.browser(t).authenticate(o.start, o.sub).callback
		},
		Callback: func(p *devidp.Provider) string { return e.srv.URL + e.side(p).cb },
	}
}

// wantOutcome asserts err is the answer the attack calls for.
func wantOutcome(t *testing.T, err error, want hostileidp.Outcome) {
	t.Helper()
	target := map[hostileidp.Outcome]error{
		hostileidp.Refused:       auth.ErrBadToken,
		hostileidp.NotThisSignIn: auth.ErrBadCallback,
		hostileidp.Unavailable:   auth.ErrProviderUnavailable,
	}[want]
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %s (%v)", err, want, target)
	}
	if want != hostileidp.Unavailable && errors.Is(err, auth.ErrProviderUnavailable) {
		t.Fatalf("err = %v: a forgery taken for an outage", err)
	}
}

// TestHostileProvidersAreRefusedAtBothCallbacks plays every attack of
// hostileidp against the aidants' callback and the FranceConnect
// callback: each is refused as the attack says, opens no session,
// journals nothing, and a code is never redeemed when the answer names
// another provider. Honest sign-ins before and after show the refusals
// are the attacks' doing, and that none leaves the service unable to
// verify honest answers (a poisoned key cache). The service's log names
// claims and amr/acr values, never tokens nor identities.
func TestHostileProvidersAreRefusedAtBothCallbacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{acr: hostileidp.AskedACR})
	attacks := hostileidp.Attacks()
	covered := map[string]map[hostileidp.Family]bool{}

	// Discovery attacks first: the service discovers a provider at its
	// first sign-in and keeps the result.
	run := func(s side, atk hostileidp.Attack) {
		t.Run(s.name+"/"+string(atk.Family)+"/"+atk.Name, func(t *testing.T) {
			victim := e.browser(t)
			a := e.arena(t, s, victim)
			defer hostileidp.Reset(a)
			sessions, events, tokens := len(e.sessions(t)), len(e.events(t, "")), e.tokenRequests.Load()
			if atk.Arm != nil {
				atk.Arm(a)
			}
			var resp *http.Response
			var err error
			switch {
			case atk.AtDiscovery:
				resp, _ = victim.do(http.MethodGet, s.start, nil)
				err = e.lastResult().err
				if resp.StatusCode == http.StatusSeeOther {
					t.Fatalf("the sign-in started: sent to %s", resp.Header.Get("Location"))
				}
			case atk.Callback != nil:
				resp, err = victim.callback(atk.Callback(a))
			default:
				resp, err = victim.callback(a.Answer(s.idp))
			}
			wantOutcome(t, err, atk.Want)
			t.Logf("%s: %v", atk.Want, err)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("status %s", resp.Status)
			}
			if n := len(e.sessions(t)); n != sessions {
				t.Errorf("%d sessions opened", n-sessions)
			}
			if evs := e.events(t, ""); len(evs) != events {
				t.Errorf("journaled %s", evs[len(evs)-1].Body)
			}
			if n := e.tokenRequests.Load(); atk.NoTokenRequest && n != tokens {
				t.Errorf("the code went to a token endpoint (%d requests)", n-tokens)
			}
			if covered[s.name] == nil {
				covered[s.name] = map[hostileidp.Family]bool{}
			}
			covered[s.name][atk.Family] = true
		})
	}
	for _, s := range e.sides() {
		for _, atk := range attacks {
			if atk.AtDiscovery {
				run(s, atk)
			}
		}
	}
	honest := func(when string) {
		for _, s := range e.sides() {
			b := e.browser(t)
			if _, err := b.callback(b.authenticate(s.start, s.sub).callback); err != nil {
				t.Fatalf("honest sign-in at %s %s the attacks: %v", s.name, when, err)
			}
		}
	}
	honest("before")
	for _, s := range e.sides() {
		for _, atk := range attacks {
			if !atk.AtDiscovery {
				run(s, atk)
			}
		}
	}
	honest("after")

	for _, s := range e.sides() {
		for _, f := range hostileidp.Families {
			if !covered[s.name][f] {
				t.Errorf("%s callback: no attack of the family %q", s.name, f)
			}
		}
	}
	if len(hostileidp.Families) != 13 {
		t.Errorf("%d families, the issue lists thirteen", len(hostileidp.Families))
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}`),
		regexp.MustCompile(`(?i)\b(code|state|nonce|id_token|access_token|client_secret)=`),
		regexp.MustCompile(`[a-z.]+@[a-z.-]+\.(example|org)`),
		regexp.MustCompile(`Camille|Martin|Joséphine|Lefèvre|dev-aidant|dev-usager|quelqu-un`),
	} {
		if m := re.FindString(e.logs.String()); m != "" {
			t.Errorf("the log holds %q (%s)", m, re)
		}
	}
}
