package provider_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

func TestCodesAndTokensAreJournaledWithoutSecrets(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		f := e.begin(e.jwt, nil)
		secrets := map[string]string{"request token": f.request, "verifier": f.verifier}
		e.issue(f, e.a2, e.mA, "argent")
		secrets["code"] = f.code
		used := e.bodies(audit.MandateUsed)
		if len(used) != 1 {
			t.Fatalf("%d mandate.used events after one code, want 1", len(used))
		}
		if n := e.events(audit.TokenIssued); n != 0 {
			t.Fatalf("%d token.issued events before the token request", n)
		}
		want := audit.Event{Type: audit.MandateUsed, Actor: audit.Actor{Kind: audit.ActorAidant, ID: e.a2.AidantID},
			Aidant: e.a2.AidantID, Organisation: e.orgA.ID, Usager: e.mA.UsagerID, Mandate: e.mA.ID, Service: e.jwt.svc.ID,
			Demarches: []string{"argent"}}
		checkEvent(t, used[0], want)

		assertion := e.assertion(e.jwt, nil, nil)
		secrets["client assertion"] = assertion
		form := f.form()
		form.Set("client_assertion_type", jwtBearer)
		form.Set("client_assertion", assertion)
		r := e.postToken(form, "", "")
		if r.status != http.StatusOK {
			t.Fatalf("token: %d %v", r.status, r.body)
		}
		secrets["ID token"], secrets["access token"] = r.str("id_token"), r.str("access_token")
		issued := e.bodies(audit.TokenIssued)
		if len(issued) != 1 {
			t.Fatalf("%d token.issued events after one token, want 1", len(issued))
		}
		want.Type, want.Actor = audit.TokenIssued, audit.Actor{Kind: audit.ActorService, ID: e.jwt.svc.ID}
		checkEvent(t, issued[0], want)

		// Refused uses write no token.issued.
		wantError(t, "replay", e.redeem(f, nil), http.StatusBadRequest, "invalid_grant")
		if n := e.events(audit.TokenIssued); n != 1 {
			t.Errorf("%d token.issued events after a replay, want 1", n)
		}
		// The secret methods too, and userinfo.
		for _, c := range []*client{e.basic, e.post} {
			g := e.code(c)
			id, at := e.tokens(g)
			e.userinfo(at, nil)
			secrets[c.svc.Name+" secret"], secrets[c.svc.Name+" code"] = c.secret, g.code
			secrets[c.svc.Name+" ID token"], secrets[c.svc.Name+" access token"] = id, at
		}
		secrets["service-d secret"], secrets["service-e secret"] = e.rsa.secret, e.logement.secret
		if e.events(audit.MandateUsed) != 3 || e.events(audit.TokenIssued) != 3 {
			t.Errorf("%d mandate.used, %d token.issued after 3 flows", e.events(audit.MandateUsed), e.events(audit.TokenIssued))
		}

		if _, err := audit.Verify(e.ctx, db, e.log.VerifierKey(), nil); err != nil {
			t.Fatalf("the log does not verify: %v", err)
		}
		for _, body := range e.bodies("") {
			for what, s := range secrets {
				if s == "" {
					t.Fatalf("%s is empty", what)
				}
				parts := strings.Split(s, ".")
				for _, p := range append(parts, s, url.QueryEscape(s)) {
					if len(p) >= 16 && strings.Contains(body, p) {
						t.Errorf("an event holds the %s: %s", what, body)
					}
				}
			}
		}
	})
}

func checkEvent(t *testing.T, body string, want audit.Event) {
	t.Helper()
	var got audit.Event
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != want.Type || got.Actor != want.Actor || got.Aidant != want.Aidant || got.Organisation != want.Organisation ||
		got.Usager != want.Usager || got.Mandate != want.Mandate || got.Service != want.Service || !slices.Equal(got.Demarches, want.Demarches) {
		t.Errorf("event = %s\nwant %+v", body, want)
	}
}
