package provider_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/provider"
	"aidants/store"
	"aidants/store/storetest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestDiscoveryDocument(t *testing.T) {
	e := newEnv(t, storetest.Open(t, store.SQLite))
	res, err := e.srv.Client().Get(e.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var d map[string]any
	if err := json.NewDecoder(res.Body).Decode(&d); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("discovery: %d %v", res.StatusCode, err)
	}
	if !equalJSON(d, e.p.Discovery()) {
		t.Errorf("served %v\nwant %v", d, e.p.Discovery())
	}
	for name, want := range map[string]any{
		"issuer":                                           e.issuer,
		"authorization_endpoint":                           e.issuer + "/oidc/authorize",
		"token_endpoint":                                   e.issuer + "/oidc/token",
		"userinfo_endpoint":                                e.issuer + "/oidc/userinfo",
		"jwks_uri":                                         e.issuer + "/oidc/jwks",
		"end_session_endpoint":                             e.issuer + "/oidc/logout",
		"response_types_supported":                         []string{"code"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"subject_types_supported":                          []string{"pairwise"},
		"id_token_signing_alg_values_supported":            []string{"ES256", "RS256"},
		"userinfo_signing_alg_values_supported":            []string{"ES256", "RS256"},
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt", "client_secret_basic", "client_secret_post"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"ES256", "RS256", "PS256"},
		"acr_values_supported":                             []string{"eidas1", "eidas2"},
		"prompt_values_supported":                          []string{"none", "login", "consent", "select_account"},
		"claims_parameter_supported":                       true,
		"request_parameter_supported":                      false,
		"request_uri_parameter_supported":                  false,
		"authorization_response_iss_parameter_supported":   true,
		"service_documentation":                            e.issuer + "/services/documentation",
	} {
		if !equalJSON(d[name], want) {
			t.Errorf("%s = %v, want %v", name, d[name], want)
		}
	}
	for _, claim := range []string{"rep_scope", "act", "authorization_details", "acr", "auth_time", "nonce", "given_name"} {
		if !slices.Contains(anyStrings(d["claims_supported"]), claim) {
			t.Errorf("claims_supported lacks %s", claim)
		}
	}

	// The published keys include the one that signs tokens.
	res, err = e.srv.Client().Get(d["jwks_uri"].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	id, _ := e.tokens(e.code(e.jwt))
	if len(set.Key(header(t, id).KeyID)) != 1 {
		t.Errorf("the JWKS does not publish the token key %s", header(t, id).KeyID)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("the JWKS publishes a private key (kid %s)", k.KeyID)
		}
	}

	// Golden file, with a fixed issuer (given with a trailing slash).
	fixed, err := provider.New(provider.Config{Issuer: "https://aidants.test.invalid/", PairwiseSecret: bytes.Repeat([]byte("s"), 32),
		AccessTokenTTL: time.Minute}, e.log, e.keys, e.mandates)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	fixed.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/openid-configuration", nil))
	var doc any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	got, _ := json.MarshalIndent(doc, "", "  ")
	got = append(got, '\n')
	golden := filepath.Join("testdata", "discovery.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("discovery document differs from %s (run go test -update if the change is wanted):\n%s", golden, got)
	}
}

func anyStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, s := range list {
		if s, ok := s.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
