package devidp

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"aidants/internal/jwtverify"
)

// TestTweaksChangeWhatTheProviderAnswers checks each tweak of Tweaks does
// what it says, and that Tweaks{} gives the well-behaved provider back.
func TestTweaksChangeWhatTheProviderAnswers(t *testing.T) {
	e := newEnv(t, KindAidants)
	cfg := e.config(aidantScopes...)

	t.Run("raw ID token", func(t *testing.T) {
		e.idp.SetTweaks(Tweaks{IDToken: func(tw *TokenTweak) { tw.Raw = "a.b.c.d.e" }})
		defer e.idp.SetTweaks(Tweaks{})
		a := e.newAttempt(cfg)
		tok, err := e.exchange(cfg, e.login(a, SubCamille), a.verifier)
		if err != nil {
			t.Fatal(err)
		}
		if raw, _ := tok.Extra("id_token").(string); raw != "a.b.c.d.e" {
			t.Errorf("id_token = %q, want the raw one", raw)
		}
	})

	t.Run("userinfo claims and signature", func(t *testing.T) {
		e.idp.SetTweaks(Tweaks{Userinfo: func(tw *TokenTweak) {
			tw.Claims["sub"] = "quelqu-un-d-autre"
			tw.Claims["iss"], tw.Claims["aud"] = e.idp.Issuer(), testClientID
			tw.Alg = "ES256"
		}})
		defer e.idp.SetTweaks(Tweaks{})
		a := e.newAttempt(cfg)
		tok, _, _ := e.mustExchange(cfg, a, e.login(a, SubCamille))
		req, _ := http.NewRequest(http.MethodGet, e.idp.Issuer()+"/userinfo", nil)
		tok.SetAuthHeader(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/jwt" {
			t.Fatalf("Content-Type %q, want application/jwt", ct)
		}
		jwt, err := jwtverify.Parse(string(body), "ES256")
		if err != nil {
			t.Fatal(err)
		}
		key := e.idp.PublicKey()
		var claims map[string]any
		if _, err := jwt.Verify(key.Key, jwtverify.Expect{Issuer: e.idp.Issuer(), Audience: []string{testClientID}, AllowExpired: true}, &claims); err != nil {
			t.Fatalf("signed userinfo does not verify with PublicKey: %v", err)
		}
		if claims["sub"] != "quelqu-un-d-autre" || claims["email"] != EmailCamille {
			t.Errorf("claims = %v", claims)
		}
		if jwt.KeyID != key.KeyID {
			t.Errorf("kid %q, want %q", jwt.KeyID, key.KeyID)
		}
	})

	t.Run("discovery and key set", func(t *testing.T) {
		e.idp.SetTweaks(Tweaks{
			Discovery: func(doc map[string]any) { doc["issuer"] = "https://autre.example" },
			JWKS:      func([]byte) []byte { return []byte(`{"keys":[]}`) },
		})
		defer e.idp.SetTweaks(Tweaks{})
		if _, err := oidc.NewProvider(t.Context(), e.idp.Issuer()); err == nil || !strings.Contains(err.Error(), "autre.example") {
			t.Errorf("discovery of the tweaked provider: %v, want an issuer mismatch", err)
		}
		if _, body := e.get(e.idp.Issuer() + "/jwks"); body != `{"keys":[]}` {
			t.Errorf("jwks = %s", body)
		}
	})

	t.Run("authorization response", func(t *testing.T) {
		e.idp.SetTweaks(Tweaks{Response: func(q url.Values) { q.Set("iss", "https://autre.example") }})
		defer e.idp.SetTweaks(Tweaks{})
		a := e.newAttempt(cfg)
		resp := e.submit(e.openPicker(a.authURL), url.Values{"identity": {SubCamille}})
		if iss := e.location(resp).Query().Get("iss"); iss != "https://autre.example" {
			t.Errorf("iss = %q", iss)
		}
	})

	t.Run("PKCE ignored", func(t *testing.T) {
		e.idp.SetTweaks(Tweaks{IgnorePKCE: true})
		defer e.idp.SetTweaks(Tweaks{})
		a := e.newAttempt(cfg)
		if _, err := e.exchange(cfg, e.login(a, SubCamille), oauth2.GenerateVerifier()); err != nil {
			t.Errorf("exchange with another verifier while PKCE is ignored: %v", err)
		}
	})

	// Back to normal: the same wrong verifier is refused, the ID token
	// verifies, the discovery document names the provider.
	a := e.newAttempt(cfg)
	if _, err := e.exchange(cfg, e.login(a, SubCamille), oauth2.GenerateVerifier()); err == nil {
		t.Error("after Tweaks{}, a code was redeemed with another verifier")
	}
	a = e.newAttempt(cfg)
	e.mustExchange(cfg, a, e.login(a, SubCamille))
	if _, err := oidc.NewProvider(t.Context(), e.idp.Issuer()); err != nil {
		t.Errorf("after Tweaks{}: %v", err)
	}
}

func TestSetTweakKeepsTheOtherTweaks(t *testing.T) {
	e := newEnv(t, KindAidants)
	e.idp.SetTweaks(Tweaks{IgnorePKCE: true})
	e.idp.SetTweak(func(tw *TokenTweak) { tw.Claims["nonce"] = "x" })
	e.idp.SetTweak(nil)
	if !e.idp.currentTweaks().IgnorePKCE || e.idp.currentTweaks().IDToken != nil {
		t.Errorf("SetTweak changed more than the ID token tweak")
	}
}

func TestEmailVerifiedComesWithTheEmailScope(t *testing.T) {
	e := newEnv(t, KindAidants)
	for _, tc := range []struct {
		scopes []string
		want   bool
	}{
		{aidantScopes, true},
		{[]string{"openid", "given_name", "email_verified"}, false},
	} {
		cfg := e.config(tc.scopes...)
		a := e.newAttempt(cfg)
		_, idt, _ := e.mustExchange(cfg, a, e.login(a, SubCamille))
		var c map[string]any
		idt.Claims(&c)
		if _, got := c["email_verified"]; got != tc.want || (got && c["email_verified"] != true) {
			t.Errorf("scopes %v: email_verified = %v, want released: %v", tc.scopes, c["email_verified"], tc.want)
		}
	}
	_, body := e.get(e.idp.Issuer() + "/.well-known/openid-configuration")
	var doc struct {
		Scopes []string `json:"scopes_supported"`
		Claims []string `json:"claims_supported"`
	}
	json.Unmarshal([]byte(body), &doc)
	if slices.Contains(doc.Scopes, "email_verified") || !slices.Contains(doc.Claims, "email_verified") {
		t.Errorf("discovery: scopes %v, claims %v: email_verified is a claim, not a scope", doc.Scopes, doc.Claims)
	}
}

func TestACROption(t *testing.T) {
	for _, tc := range []struct{ acr, want string }{{"", "eidas1"}, {"eidas2", "eidas2"}} {
		p, err := New(Options{Issuer: "http://127.0.0.1:1/fc", Kind: KindFranceConnect, Identities: UsagerIdentities(), ACR: tc.acr,
			Clients: []Client{{ID: testClientID, Secret: testSecret, RedirectURIs: []string{"http://127.0.0.1:1/cb"}}}})
		if err != nil {
			t.Fatal(err)
		}
		claims := p.idTokenClaims(p.now(), testClientID, p.identities[0], authCode{scopes: []string{"openid"}})
		var doc struct {
			ACRs []string `json:"acr_values_supported"`
		}
		json.Unmarshal(p.discovery, &doc)
		if claims["acr"] != tc.want || !slices.Equal(doc.ACRs, []string{tc.want}) {
			t.Errorf("ACR %q: acr %v, acr_values_supported %v, want %s", tc.acr, claims["acr"], doc.ACRs, tc.want)
		}
	}
}
