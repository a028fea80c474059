package devidp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestTweakedTokensAreRejectedByGoOIDC(t *testing.T) {
	e := newEnv(t, KindAidants)
	cfg := e.config(aidantScopes...)
	tests := map[string]func(*TokenTweak){
		"alg none":     func(tw *TokenTweak) { tw.Alg = "none" },
		"HS256":        func(tw *TokenTweak) { tw.Alg = "HS256" },
		"other issuer": func(tw *TokenTweak) { tw.Claims["iss"] = "https://autre.example" },
		"other client": func(tw *TokenTweak) { tw.Claims["aud"] = "autre-client" },
		"expired": func(tw *TokenTweak) {
			tw.Claims["exp"] = time.Now().Add(-time.Hour).Unix()
		},
	}
	for name, tweak := range tests {
		t.Run(name, func(t *testing.T) {
			e.idp.SetTweak(tweak)
			defer e.idp.SetTweak(nil)
			a := e.newAttempt(cfg)
			tok, err := e.exchange(cfg, e.login(a, SubCamille), a.verifier)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			raw, _ := tok.Extra("id_token").(string)
			_, err = e.verifier().Verify(t.Context(), raw)
			if err == nil {
				t.Fatal("go-oidc accepted the tweaked token")
			}
			t.Logf("go-oidc: %v", err)
		})
	}
	t.Run("alg none shape", func(t *testing.T) {
		e.idp.SetTweak(func(tw *TokenTweak) { tw.Alg = "none" })
		defer e.idp.SetTweak(nil)
		a := e.newAttempt(cfg)
		tok, err := e.exchange(cfg, e.login(a, SubCamille), a.verifier)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := tok.Extra("id_token").(string)
		parts := strings.Split(raw, ".")
		if len(parts) != 3 || parts[2] != "" || parts[0] != b64([]byte(`{"alg":"none"}`)) {
			t.Errorf("unsigned token = %q", raw)
		}
	})
}

func TestTweakedNonceShowsInClaims(t *testing.T) {
	e := newEnv(t, KindFranceConnect)
	cfg := e.config(franceConnectScopes...)
	e.idp.SetTweak(func(tw *TokenTweak) {
		if tw.Alg != "ES256" {
			t.Errorf("default alg = %q", tw.Alg)
		}
		tw.Claims["nonce"] = "nonce-d-un-autre-brouillon"
	})
	a := e.newAttempt(cfg)
	_, idt, _ := e.mustExchange(cfg, a, e.login(a, SubJosephine))
	if idt.Nonce != "nonce-d-un-autre-brouillon" {
		t.Errorf("nonce = %q, want the tweaked one", idt.Nonce)
	}
	e.idp.SetTweak(nil)
	a = e.newAttempt(cfg)
	if _, idt, _ = e.mustExchange(cfg, a, e.login(a, SubJosephine)); idt.Nonce != a.nonce {
		t.Errorf("after SetTweak(nil), nonce = %q, want %q", idt.Nonce, a.nonce)
	}
}

func TestEndSessionRedirectsOnlyToRegisteredURIs(t *testing.T) {
	e := newEnv(t, KindAidants)
	cfg := e.config(aidantScopes...)
	a := e.newAttempt(cfg)
	_, _, idToken := e.mustExchange(cfg, a, e.login(a, SubCamille))

	e.idp.SetTweak(func(tw *TokenTweak) { tw.Claims["exp"] = time.Now().Add(-time.Hour).Unix() })
	a = e.newAttempt(cfg)
	tok, err := e.exchange(cfg, e.login(a, SubCamille), a.verifier)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := tok.Extra("id_token").(string)
	e.idp.SetTweak(func(tw *TokenTweak) { tw.Alg = "none" })
	a = e.newAttempt(cfg)
	if tok, err = e.exchange(cfg, e.login(a, SubCamille), a.verifier); err != nil {
		t.Fatal(err)
	}
	unsigned, _ := tok.Extra("id_token").(string)
	e.idp.SetTweak(nil)

	tests := []struct {
		name     string
		params   url.Values
		redirect bool
	}{
		{"client_id", url.Values{"client_id": {testClientID}, "post_logout_redirect_uri": {e.loggedIn}}, true},
		{"id_token_hint", url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {e.loggedIn}}, true},
		{"expired hint", url.Values{"id_token_hint": {expired}, "post_logout_redirect_uri": {e.loggedIn}}, true},
		{"unsigned hint", url.Values{"id_token_hint": {unsigned}, "post_logout_redirect_uri": {e.loggedIn}}, false},
		{"hint for another client", url.Values{"id_token_hint": {idToken}, "client_id": {"autre"}, "post_logout_redirect_uri": {e.loggedIn}}, false},
		{"unregistered uri", url.Values{"client_id": {testClientID}, "post_logout_redirect_uri": {"https://evil.example/"}}, false},
		{"unknown client", url.Values{"client_id": {"autre"}, "post_logout_redirect_uri": {e.loggedIn}}, false},
		{"no client", url.Values{"post_logout_redirect_uri": {e.loggedIn}}, false},
		{"no uri", url.Values{"client_id": {testClientID}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.params.Set("state", "etat-123")
			resp, body := e.get(e.idp.Issuer() + "/logout?" + tt.params.Encode())
			if !tt.redirect {
				if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" {
					t.Fatalf("status %d Location %q, want the page", resp.StatusCode, resp.Header.Get("Location"))
				}
				if !strings.Contains(body, "déconnecté(e) du fournisseur d&#39;identité de développement") {
					t.Errorf("page lacks the logout message: %s", body)
				}
				return
			}
			loc := e.location(resp)
			if got := strings.SplitN(loc.String(), "?", 2)[0]; got != e.loggedIn || loc.Query().Get("state") != "etat-123" {
				t.Errorf("redirected to %s", loc)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	good := func() Options {
		return Options{
			Issuer:     "http://127.0.0.1:8080/dev/aidants",
			Kind:       KindAidants,
			Identities: AidantIdentities(testSIRET),
			Clients:    []Client{{ID: "c", Secret: "s", RedirectURIs: []string{"http://127.0.0.1:8080/cb"}}},
		}
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("good options: %v", err)
	}
	tests := map[string]func(*Options){
		"trailing slash":     func(o *Options) { o.Issuer += "/" },
		"relative issuer":    func(o *Options) { o.Issuer = "/dev/aidants" },
		"issuer with query":  func(o *Options) { o.Issuer += "?x=1" },
		"unknown kind":       func(o *Options) { o.Kind = 0 },
		"no identities":      func(o *Options) { o.Identities = nil },
		"duplicate sub":      func(o *Options) { o.Identities = append(o.Identities, o.Identities[0]) },
		"client sans secret": func(o *Options) { o.Clients[0].Secret = "" },
		"duplicate client":   func(o *Options) { o.Clients = append(o.Clients, o.Clients[0]) },
		"relative redirect":  func(o *Options) { o.Clients[0].RedirectURIs = []string{"/cb"} },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			o := good()
			mutate(&o)
			if _, err := New(o); err == nil {
				t.Error("New accepted bad options")
			}
		})
	}
}

func TestDefaultIdentities(t *testing.T) {
	aidants := AidantIdentities(testSIRET)
	mfa := map[string]bool{SubCamille: true, SubDominique: false, SubSacha: true, SubAlex: true}
	for _, id := range aidants {
		want, ok := mfa[id.Sub]
		if !ok || id.MFA != want || id.Claims["siret"] != testSIRET || id.Label == "" {
			t.Errorf("aidant %+v", id)
		}
		if email, _ := id.Claims["email"].(string); email != strings.ToLower(email) || email == "" {
			t.Errorf("aidant %s email %q", id.Sub, email)
		}
	}
	aidants[0].Claims["siret"] = "modifié"
	if AidantIdentities(testSIRET)[0].Claims["siret"] != testSIRET {
		t.Error("identities share their claims maps between calls")
	}
	for _, id := range UsagerIdentities() {
		for _, name := range []string{"given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry", "email"} {
			if _, ok := id.Claims[name]; !ok {
				t.Errorf("usager %s lacks %s", id.Sub, name)
			}
		}
	}
}

func decodeJSON(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}
