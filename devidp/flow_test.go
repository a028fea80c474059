package devidp

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

var aidantScopes = []string{"openid", "given_name", "usual_name", "email", "uid", "siret"}

var franceConnectScopes = []string{"openid", "given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry", "email"}

type aidantClaims struct {
	GivenName string   `json:"given_name"`
	UsualName string   `json:"usual_name"`
	Email     string   `json:"email"`
	UID       string   `json:"uid"`
	SIRET     string   `json:"siret"`
	ACR       string   `json:"acr"`
	AMR       []string `json:"amr"`
	AuthTime  int64    `json:"auth_time"`
}

func TestAidantLoginReleasesClaimsAndMFA(t *testing.T) {
	e := newEnv(t, KindAidants)
	cfg := e.config(aidantScopes...)
	tests := []struct {
		sub, given, usual, email string
		mfa                      bool
	}{
		{SubCamille, "Camille", "Martin", EmailCamille, true},
		{SubDominique, "Dominique", "Bernard", EmailDominique, false},
	}
	for _, tt := range tests {
		t.Run(tt.sub, func(t *testing.T) {
			a := e.newAttempt(cfg)
			f := e.openPicker(a.authURL)
			for _, want := range AidantIdentities(testSIRET) {
				if f.labels[want.Sub] != want.Label {
					t.Errorf("picker label for %s = %q, want %q", want.Sub, f.labels[want.Sub], want.Label)
				}
			}
			for _, want := range []string{notice, "Annuler", "Fournisseur de test", `lang="fr"`} {
				if !strings.Contains(f.body, want) {
					t.Errorf("picker lacks %q", want)
				}
			}

			code := e.login(a, tt.sub)
			tok, idt, raw := e.mustExchange(cfg, a, code)
			if idt.Issuer != e.idp.Issuer() || !slices.Equal(idt.Audience, []string{testClientID}) || idt.Subject != tt.sub {
				t.Errorf("iss/aud/sub = %q %q %q", idt.Issuer, idt.Audience, idt.Subject)
			}
			if idt.Nonce != a.nonce {
				t.Errorf("nonce = %q, want %q", idt.Nonce, a.nonce)
			}
			checkES256Header(t, raw, e.idp.kid)

			var c aidantClaims
			if err := idt.Claims(&c); err != nil {
				t.Fatal(err)
			}
			if c.GivenName != tt.given || c.UsualName != tt.usual || c.Email != tt.email || c.SIRET != testSIRET || c.UID == "" {
				t.Errorf("claims = %+v", c)
			}
			if got := slices.Contains(c.AMR, "mfa"); got != tt.mfa {
				t.Errorf("amr = %v, mfa present %v, want %v", c.AMR, got, tt.mfa)
			}
			if c.ACR != "eidas1" || c.AuthTime != e.clock.Now().Unix() {
				t.Errorf("acr %q auth_time %d", c.ACR, c.AuthTime)
			}

			ui, err := e.rp.UserInfo(t.Context(), oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			var uc aidantClaims
			if err := ui.Claims(&uc); err != nil {
				t.Fatal(err)
			}
			if ui.Subject != tt.sub || uc.Email != tt.email || uc.SIRET != testSIRET {
				t.Errorf("userinfo sub %q claims %+v", ui.Subject, uc)
			}
		})
	}
}

type pivotClaims struct {
	GivenName    string   `json:"given_name"`
	FamilyName   string   `json:"family_name"`
	Birthdate    string   `json:"birthdate"`
	Gender       string   `json:"gender"`
	Birthplace   *string  `json:"birthplace"`
	Birthcountry string   `json:"birthcountry"`
	Email        string   `json:"email"`
	ACR          string   `json:"acr"`
	AMR          []string `json:"amr"`
}

func TestFranceConnectLoginReleasesPivotIdentity(t *testing.T) {
	e := newEnv(t, KindFranceConnect)
	cfg := e.config(franceConnectScopes...)
	tests := []struct {
		sub  string
		want pivotClaims
	}{
		{SubJosephine, pivotClaims{GivenName: "Joséphine Marie", FamilyName: "Lefèvre", Birthdate: "1948-03-12",
			Gender: "female", Birthplace: ptr("44109"), Birthcountry: "99100", Email: EmailJosephine}},
		{SubAhmed, pivotClaims{GivenName: "Ahmed", FamilyName: "Benali", Birthdate: "1975-11-02",
			Gender: "male", Birthplace: ptr(""), Birthcountry: "99350", Email: EmailAhmed}},
	}
	for _, tt := range tests {
		t.Run(tt.sub, func(t *testing.T) {
			a := e.newAttempt(cfg, oauth2.SetAuthURLParam("acr_values", "eidas1"))
			f := e.openPicker(a.authURL)
			if len(f.labels) != len(UsagerIdentities()) {
				t.Errorf("picker offers %d identities", len(f.labels))
			}
			code := e.login(a, tt.sub)
			tok, idt, _ := e.mustExchange(cfg, a, code)
			if idt.Subject != tt.sub || idt.Nonce != a.nonce {
				t.Errorf("sub %q nonce %q", idt.Subject, idt.Nonce)
			}
			var c pivotClaims
			if err := idt.Claims(&c); err != nil {
				t.Fatal(err)
			}
			if c.ACR != "eidas1" {
				t.Errorf("acr = %q, want eidas1", c.ACR)
			}
			if c.AMR != nil {
				t.Errorf("amr = %v, want none", c.AMR)
			}
			// A person born abroad has an empty birthplace, still released.
			if c.Birthplace == nil || *c.Birthplace != *tt.want.Birthplace {
				t.Errorf("birthplace = %v, want %q", c.Birthplace, *tt.want.Birthplace)
			}
			if !equalPivot(c, tt.want) {
				t.Errorf("claims = %+v, want %+v", c, tt.want)
			}
			ui, err := e.rp.UserInfo(t.Context(), oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			if ui.Subject != tt.sub || ui.Email != tt.want.Email {
				t.Errorf("userinfo sub %q email %q", ui.Subject, ui.Email)
			}
		})
	}
}

func equalPivot(a, b pivotClaims) bool {
	return a.GivenName == b.GivenName && a.FamilyName == b.FamilyName && a.Birthdate == b.Birthdate &&
		a.Gender == b.Gender && a.Birthcountry == b.Birthcountry && a.Email == b.Email
}

func ptr[T any](v T) *T { return &v }

func TestOpenIDScopeAloneReleasesOnlySub(t *testing.T) {
	e := newEnv(t, KindFranceConnect)
	cfg := e.config("openid", "unknown_scope")
	a := e.newAttempt(cfg)
	tok, idt, _ := e.mustExchange(cfg, a, e.login(a, SubLucie))
	var all map[string]any
	if err := idt.Claims(&all); err != nil {
		t.Fatal(err)
	}
	for _, name := range franceConnectScopes[1:] {
		if _, ok := all[name]; ok {
			t.Errorf("id token releases %s without its scope", name)
		}
	}
	ui, err := e.rp.UserInfo(t.Context(), oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	var uall map[string]any
	if err := ui.Claims(&uall); err != nil {
		t.Fatal(err)
	}
	if len(uall) != 1 || uall["sub"] != SubLucie {
		t.Errorf("userinfo = %v, want only sub", uall)
	}
}

func TestPickerCancelReturnsAccessDenied(t *testing.T) {
	e := newEnv(t, KindAidants)
	a := e.newAttempt(e.config(aidantScopes...))
	resp := e.submit(e.openPicker(a.authURL), map[string][]string{"cancel": {"1"}})
	q := e.location(resp).Query()
	if q.Get("error") != "access_denied" || q.Get("state") != a.state || q.Get("iss") != e.idp.Issuer() || q.Has("code") {
		t.Errorf("cancel redirect query = %v", q)
	}
}

func TestPickerRequestIsSingleUse(t *testing.T) {
	e := newEnv(t, KindAidants)
	a := e.newAttempt(e.config(aidantScopes...))
	f := e.openPicker(a.authURL)
	if resp := e.submit(f, map[string][]string{"identity": {SubCamille}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first pick: status %d", resp.StatusCode)
	}
	resp := e.submit(f, map[string][]string{"identity": {SubCamille}})
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("second pick: status %d, Location %q; want 400 without redirect", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestPickerUnknownIdentityIsRefused(t *testing.T) {
	e := newEnv(t, KindAidants)
	a := e.newAttempt(e.config(aidantScopes...))
	f := e.openPicker(a.authURL)
	if resp := e.submit(f, map[string][]string{"identity": {"intrus"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown identity: status %d, want 400", resp.StatusCode)
	}
	// The request survives a bad pick.
	if resp := e.submit(f, map[string][]string{"identity": {SubSacha}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("pick after a bad one: status %d, want 303", resp.StatusCode)
	}
}

func TestPickerPageHasSecurityHeaders(t *testing.T) {
	e := newEnv(t, KindAidants)
	a := e.newAttempt(e.config(aidantScopes...))
	resp, body := e.get(a.authURL)
	h := resp.Header
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "form-action 'self' " + e.srv.URL, "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(body, "<script") {
		t.Error("page allows or uses inline script")
	}
	want := map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	if !strings.Contains(body, `<link rel="stylesheet" href="/static/aidants.css">`) {
		t.Error("stylesheet link missing")
	}
}

func TestDiscoveryDocument(t *testing.T) {
	for _, kind := range []Kind{KindAidants, KindFranceConnect} {
		t.Run(kind.String(), func(t *testing.T) {
			e := newEnv(t, kind)
			var doc map[string]any
			if err := e.rp.Claims(&doc); err != nil {
				t.Fatal(err)
			}
			iss := e.idp.Issuer()
			wantStr := map[string]string{
				"issuer":                 iss,
				"authorization_endpoint": iss + "/authorize",
				"token_endpoint":         iss + "/token",
				"userinfo_endpoint":      iss + "/userinfo",
				"jwks_uri":               iss + "/jwks",
				"end_session_endpoint":   iss + "/logout",
			}
			for k, v := range wantStr {
				if doc[k] != v {
					t.Errorf("%s = %v, want %q", k, doc[k], v)
				}
			}
			wantList := map[string][]string{
				"response_types_supported":              {"code"},
				"grant_types_supported":                 {"authorization_code"},
				"subject_types_supported":               {"public"},
				"id_token_signing_alg_values_supported": {"ES256"},
				"code_challenge_methods_supported":      {"S256"},
				"token_endpoint_auth_methods_supported": {"client_secret_basic", "client_secret_post"},
			}
			for k, v := range wantList {
				if got := strList(doc[k]); !slices.Equal(got, v) {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
			if doc["authorization_response_iss_parameter_supported"] != true {
				t.Error("iss parameter support not advertised")
			}
			if !slices.Contains(strList(doc["scopes_supported"]), "openid") || !slices.Contains(strList(doc["claims_supported"]), "given_name") {
				t.Errorf("scopes %v claims %v", doc["scopes_supported"], doc["claims_supported"])
			}
			acr := strList(doc["acr_values_supported"])
			if kind == KindFranceConnect && !slices.Equal(acr, []string{"eidas1"}) {
				t.Errorf("acr_values_supported = %v", acr)
			}
		})
	}
}

func TestJWKSPublishesTheSigningKey(t *testing.T) {
	e := newEnv(t, KindAidants)
	resp, body := e.get(e.idp.Issuer() + "/jwks")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	k := set.Keys[0]
	if k.KeyID == "" || k.Use != "sig" || k.Algorithm != "ES256" || !k.IsPublic() {
		t.Errorf("key kid %q use %q alg %q public %v", k.KeyID, k.Use, k.Algorithm, k.IsPublic())
	}
}

func TestPathsOutsideTheIssuerAreNotServed(t *testing.T) {
	e := newEnv(t, KindAidants)
	for _, p := range []string{"/dev/aidants/nope", "/dev/aidantsx/jwks"} {
		resp, _ := e.get(e.srv.URL + p)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, resp.StatusCode)
		}
	}
}

func checkES256Header(t *testing.T, raw, kid string) {
	t.Helper()
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("parse id token: %v", err)
	}
	h := jws.Signatures[0].Header
	if h.KeyID != kid || h.ExtraHeaders[jose.HeaderType] != "JWT" {
		t.Errorf("header kid %q typ %v", h.KeyID, h.ExtraHeaders[jose.HeaderType])
	}
}

func strList(v any) []string {
	vs, _ := v.([]any)
	out := make([]string, 0, len(vs))
	for _, x := range vs {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
