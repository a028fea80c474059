package provider_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"aidants/store"
	"aidants/store/storetest"
)

// idOnly are the ID token's claims that userinfo does not repeat.
var idOnly = []string{"iss", "aud", "exp", "iat", "auth_time", "nonce", "acr"}

func TestIDTokenSaysWhoActsForWhom(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		f := e.code(e.jwt)
		id, at := e.tokens(f)
		c := e.verify(e.jwt, id)
		if c["iss"] != e.issuer || c["aud"] != e.jwt.svc.ID || c["nonce"] != f.nonce || c["acr"] != "eidas1" ||
			c["auth_time"] != float64(e.authTime.Unix()) {
			t.Errorf("iss %v, aud %v, nonce %v, acr %v, auth_time %v", c["iss"], c["aud"], c["nonce"], c["acr"], c["auth_time"])
		}
		if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != (5 * time.Minute).Seconds() {
			t.Errorf("the ID token lives %v s, want 300", exp-iat)
		}
		if h := header(t, id); h.Algorithm != "ES256" {
			t.Errorf("ID token alg = %s, want ES256", h.Algorithm)
		}
		sub, _ := c["sub"].(string)
		if len(sub) < 32 || strings.Contains(sub, e.mA.UsagerID) {
			t.Errorf("sub = %q: not a pairwise identifier", sub)
		}
		// The pivot identity the scopes allow, nothing more.
		for name, want := range map[string]string{"given_name": "Joséphine Marie", "family_name": "Lefèvre", "birthdate": "1948-03-12"} {
			if c[name] != want {
				t.Errorf("%s = %v, want %s", name, c[name], want)
			}
		}
		for _, name := range []string{"email", "gender", "birthplace", "birthcountry"} {
			if _, ok := c[name]; ok {
				t.Errorf("%s is released though its scope was not asked", name)
			}
		}
		if !equalJSON(c["rep_scope"], []string{"Argent-Impots-Consommation"}) {
			t.Errorf("rep_scope = %v", c["rep_scope"])
		}
		act, _ := c["act"].(map[string]any)
		actSub, _ := act["sub"].(string)
		if len(actSub) < 32 || actSub == sub || strings.Contains(actSub, e.a2.AidantID) {
			t.Errorf("act.sub = %q (person's sub %q): not the aidant's own pairwise identifier", actSub, sub)
		}
		wantAct := map[string]any{"sub": actSub, "given_name": "Dominique", "family_name": "Bernard",
			"organisation": map[string]any{"siret": "98765432100015", "name": "Maison France services A"}}
		if !equalJSON(act, wantAct) {
			t.Errorf("act = %v, want %v", act, wantAct)
		}
		wantDetails := []map[string]any{{"type": "mandate", "identifier": e.mA.ID, "actions": []string{"argent"},
			"expires_at": e.mA.ExpiresAt.UTC().Format(time.RFC3339)}}
		if !equalJSON(c["authorization_details"], wantDetails) {
			t.Errorf("authorization_details = %v, want %v", c["authorization_details"], wantDetails)
		}

		// Userinfo: the same sub and claims.
		u := e.userinfo(at, nil)
		if u.status != http.StatusOK || u.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("userinfo: %d %v", u.status, u.body)
		}
		want := map[string]any{}
		for k, v := range c {
			if !slices.Contains(idOnly, k) {
				want[k] = v
			}
		}
		if !equalJSON(u.body, want) {
			t.Errorf("userinfo = %v\nwant the ID token's %v", u.body, want)
		}

		// The access token: a JWT (RFC 9068) without the person's identity.
		h := header(t, at)
		if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "at+jwt" || h.Algorithm != "ES256" {
			t.Errorf("access token header = typ %v, alg %s", h.ExtraHeaders[jose.HeaderType], h.Algorithm)
		}
		ac := payload(t, at)
		if ac["iss"] != e.issuer || ac["client_id"] != e.jwt.svc.ID || ac["sub"] != sub || ac["jti"] == nil ||
			ac["exp"].(float64)-ac["iat"].(float64) != (5*time.Minute).Seconds() {
			t.Errorf("access token claims = %v", ac)
		}
		for _, name := range []string{"given_name", "family_name", "birthdate"} {
			if _, ok := ac[name]; ok {
				t.Errorf("the access token carries %s", name)
			}
		}

		// A second flow of the same service: the same person, the same sub.
		c2 := e.verify(e.jwt, first(e.tokens(e.code(e.jwt))))
		if c2["sub"] != sub || c2["act"].(map[string]any)["sub"] != actSub {
			t.Errorf("second flow: sub %v, act.sub %v; want %s, %s", c2["sub"], c2["act"].(map[string]any)["sub"], sub, actSub)
		}

		// Another service, through golang.org/x/oauth2 and go-oidc: another
		// sub for the same person and the same aidant.
		fb := e.code(e.basic)
		op, err := oidc.NewProvider(e.ctx, e.issuer)
		if err != nil {
			t.Fatal(err)
		}
		conf := oauth2.Config{ClientID: e.basic.svc.ID, ClientSecret: e.basic.secret, RedirectURL: e.basic.redirect, Endpoint: op.Endpoint()}
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
		tok, err := conf.Exchange(e.ctx, fb.code, oauth2.VerifierOption(fb.verifier))
		if err != nil {
			t.Fatal(err)
		}
		rawB, _ := tok.Extra("id_token").(string)
		cb := e.verify(e.basic, rawB)
		if cb["sub"] == sub || cb["act"].(map[string]any)["sub"] == actSub || cb["sub"] == nil {
			t.Errorf("service B sees sub %v, act.sub %v: the same as service A's", cb["sub"], cb["act"].(map[string]any)["sub"])
		}
		ui, err := op.UserInfo(e.ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatal(err)
		}
		if ui.Subject != cb["sub"] {
			t.Errorf("userinfo sub %s, ID token sub %v", ui.Subject, cb["sub"])
		}
	})
}

func TestScopesReleaseTheirClaims(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		f := e.begin(e.jwt, func(q url.Values) { q.Set("scope", "openid email gender") })
		e.issue(f, e.a2, e.mA, "argent")
		id, at := e.tokens(f)
		c := e.verify(e.jwt, id)
		if c["email"] != "josephine.lefevre@example.org" || c["gender"] != "female" {
			t.Errorf("email %v, gender %v", c["email"], c["gender"])
		}
		for _, name := range []string{"given_name", "family_name", "birthdate", "birthplace"} {
			if _, ok := c[name]; ok {
				t.Errorf("%s is released though its scope was not asked", name)
			}
		}
		if u := e.userinfo(at, nil); u.body["email"] != c["email"] || u.body["given_name"] != nil {
			t.Errorf("userinfo = %v", u.body)
		}
	})
}

// FranceConnect's grouped scopes release their claims and no others.
func TestFranceConnectScopeGroups(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	f := e.begin(e.jwt, func(q url.Values) { q.Set("scope", "openid profile birth") })
	e.issue(f, e.a2, e.mA, "argent")
	id, _ := e.tokens(f)
	c := e.verify(e.jwt, id)
	for _, name := range []string{"given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry"} {
		if _, ok := c[name]; !ok {
			t.Errorf("%s is not released by profile birth", name)
		}
	}
	if _, ok := c["email"]; ok {
		t.Error("email is released though its scope was not asked")
	}
}

func TestRS256ServiceGetsRS256IDTokens(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		id, at := e.tokens(e.code(e.rsa))
		if h := header(t, id); h.Algorithm != "RS256" {
			t.Fatalf("ID token alg = %s, want RS256", h.Algorithm)
		}
		c := e.verify(e.rsa, id)
		if c["aud"] != e.rsa.svc.ID {
			t.Errorf("aud = %v", c["aud"])
		}
		if h := header(t, at); h.Algorithm != "ES256" {
			t.Errorf("access token alg = %s, want ES256", h.Algorithm)
		}
		if u := e.userinfo(at, nil); u.status != http.StatusOK || u.body["sub"] != c["sub"] {
			t.Errorf("userinfo: %d %v", u.status, u.body)
		}
	})
}

func TestTokensSignedBeforeRotationStillVerify(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		idOld, atOld := e.tokens(e.code(e.jwt))
		rsaOld, _ := e.tokens(e.code(e.rsa))
		cached := e.verifier(e.jwt)
		if _, err := cached.Verify(e.ctx, idOld); err != nil {
			t.Fatal(err)
		}
		oldKids := []string{header(t, idOld).KeyID, header(t, rsaOld).KeyID}
		newKids, err := e.keys.Rotate(e.ctx, operator)
		if err != nil {
			t.Fatal(err)
		}
		idNew, atNew := e.tokens(e.code(e.jwt))
		rsaNew, _ := e.tokens(e.code(e.rsa))
		for _, tok := range []string{idNew, atNew, rsaNew} {
			if kid := header(t, tok).KeyID; !slices.Contains(newKids, kid) || slices.Contains(oldKids, kid) {
				t.Errorf("a token signed after the rotation has kid %s; new kids %v", kid, newKids)
			}
		}
		// A verifier that fetches the JWKS after the rotation, and one that
		// had cached it before: both accept the old and the new tokens.
		e.verify(e.jwt, idOld)
		e.verify(e.rsa, rsaOld)
		e.verify(e.jwt, idNew)
		e.verify(e.rsa, rsaNew)
		for _, tok := range []string{idOld, idNew} {
			if _, err := cached.Verify(e.ctx, tok); err != nil {
				t.Errorf("the verifier of before the rotation: %v", err)
			}
		}
		for _, at := range []string{atOld, atNew} {
			if u := e.userinfo(at, nil); u.status != http.StatusOK {
				t.Errorf("userinfo: %d %v", u.status, u.body)
			}
		}
		set, err := e.keys.JWKS(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		var published []string
		for _, k := range set.Keys {
			published = append(published, k.KeyID)
		}
		for _, kid := range append(oldKids, newKids...) {
			if !slices.Contains(published, kid) {
				t.Errorf("kid %s is not published (JWKS: %v)", kid, published)
			}
		}
	})
}

func first(a, _ string) string { return a }
