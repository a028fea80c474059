package devidp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestAuthorizeWithBadClientOrRedirectShowsPageWithoutRedirect(t *testing.T) {
	e := newEnv(t, KindAidants)
	a := e.newAttempt(e.config(aidantScopes...))
	tests := map[string]map[string]string{
		"unknown client":           {"client_id": "intrus"},
		"missing client":           {"client_id": ""},
		"unregistered redirect":    {"redirect_uri": "https://evil.example/callback"},
		"redirect prefix":          {"redirect_uri": e.callback + "/more"},
		"redirect with query":      {"redirect_uri": e.callback + "?x=1"},
		"missing redirect":         {"redirect_uri": ""},
		"bad redirect and no pkce": {"redirect_uri": "https://evil.example/", "code_challenge": ""},
	}
	for name, params := range tests {
		t.Run(name, func(t *testing.T) {
			resp, body := e.get(withParams(t, a.authURL, params))
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("redirected to %q", loc)
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "Aucune redirection") {
				t.Errorf("not the French refusal page: %s", body)
			}
		})
	}
}

func TestAuthorizeErrorsAreRedirectedToTheClient(t *testing.T) {
	e := newEnv(t, KindAidants)
	a := e.newAttempt(e.config(aidantScopes...))
	tests := []struct {
		name   string
		params map[string]string
		code   string
	}{
		{"missing PKCE", map[string]string{"code_challenge": "", "code_challenge_method": ""}, "invalid_request"},
		{"plain PKCE", map[string]string{"code_challenge_method": "plain"}, "invalid_request"},
		{"missing method", map[string]string{"code_challenge_method": ""}, "invalid_request"},
		{"malformed challenge", map[string]string{"code_challenge": "trop-court"}, "invalid_request"},
		{"missing nonce", map[string]string{"nonce": ""}, "invalid_request"},
		{"token response type", map[string]string{"response_type": "token"}, "unsupported_response_type"},
		{"no openid scope", map[string]string{"scope": "email"}, "invalid_scope"},
		{"prompt none", map[string]string{"prompt": "none"}, "login_required"},
		{"bad max_age", map[string]string{"max_age": "-1"}, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := e.get(withParams(t, a.authURL, tt.params))
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}
			loc := e.location(resp)
			q := loc.Query()
			if !strings.HasPrefix(loc.String(), e.callback+"?") {
				t.Errorf("redirected to %s", loc)
			}
			if q.Get("error") != tt.code || q.Get("error_description") == "" || q.Get("state") != a.state || q.Get("iss") != e.idp.Issuer() {
				t.Errorf("query = %v, want error %s with state and iss", q, tt.code)
			}
		})
	}
	t.Run("missing state", func(t *testing.T) {
		resp, _ := e.get(withParams(t, a.authURL, map[string]string{"state": ""}))
		q := e.location(resp).Query()
		if q.Get("error") != "invalid_request" || q.Has("state") {
			t.Errorf("query = %v", q)
		}
	})
}

func TestAuthorizeHonoursPromptLoginAndMaxAge(t *testing.T) {
	e := newEnv(t, KindAidants)
	cfg := e.config(aidantScopes...)
	a := e.newAttempt(cfg, oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0"))
	_, idt, _ := e.mustExchange(cfg, a, e.login(a, SubCamille))
	var c aidantClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.AuthTime != e.clock.Now().Unix() {
		t.Errorf("auth_time %d, want now", c.AuthTime)
	}
}

func TestTokenRefusals(t *testing.T) {
	e := newEnv(t, KindAidants)
	cfg := e.config(aidantScopes...)

	t.Run("code reused", func(t *testing.T) {
		a := e.newAttempt(cfg)
		code := e.login(a, SubCamille)
		tok, _, _ := e.mustExchange(cfg, a, code)
		_, err := e.exchange(cfg, code, a.verifier)
		if got, _ := retrieveError(t, err); got != "invalid_grant" {
			t.Errorf("reuse: error %q, want invalid_grant", got)
		}
		// The replay revokes the access token the code produced.
		resp := userinfoRequest(t, t.Context(), http.MethodGet, e.rp.UserInfoEndpoint(), tok.AccessToken)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("userinfo after replay: status %d, want 401", resp.StatusCode)
		}
	})

	t.Run("wrong verifier", func(t *testing.T) {
		a := e.newAttempt(cfg)
		_, err := e.exchange(cfg, e.login(a, SubCamille), oauth2.GenerateVerifier())
		if got, _ := retrieveError(t, err); got != "invalid_grant" {
			t.Errorf("error %q, want invalid_grant", got)
		}
	})

	t.Run("wrong client secret", func(t *testing.T) {
		a := e.newAttempt(cfg)
		code := e.login(a, SubCamille)
		bad := *cfg
		bad.ClientSecret = "pas-le-bon-secret"
		for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
			bad.Endpoint.AuthStyle = style
			_, err := e.exchange(&bad, code, a.verifier)
			if got, status := retrieveError(t, err); got != "invalid_client" || status != http.StatusUnauthorized {
				t.Errorf("style %d: error %q status %d, want invalid_client 401", style, got, status)
			}
		}
		// A failed client authentication does not burn the code.
		e.mustExchange(cfg, a, code)
	})

	t.Run("client_secret_post", func(t *testing.T) {
		a := e.newAttempt(cfg)
		post := *cfg
		post.Endpoint.AuthStyle = oauth2.AuthStyleInParams
		e.mustExchange(&post, a, e.login(a, SubAlex))
	})

	t.Run("other redirect_uri", func(t *testing.T) {
		a := e.newAttempt(cfg)
		code := e.login(a, SubCamille)
		other := *cfg
		other.RedirectURL = e.srv.URL + "/ailleurs"
		_, err := e.exchange(&other, code, a.verifier)
		if got, _ := retrieveError(t, err); got != "invalid_grant" {
			t.Errorf("error %q, want invalid_grant", got)
		}
	})

	t.Run("code older than 60 s", func(t *testing.T) {
		a := e.newAttempt(cfg)
		code := e.login(a, SubCamille)
		e.clock.Advance(61 * time.Second)
		_, err := e.exchange(cfg, code, a.verifier)
		if got, _ := retrieveError(t, err); got != "invalid_grant" {
			t.Errorf("error %q, want invalid_grant", got)
		}
	})

	t.Run("unknown code", func(t *testing.T) {
		_, err := e.exchange(cfg, "inconnu", oauth2.GenerateVerifier())
		if got, _ := retrieveError(t, err); got != "invalid_grant" {
			t.Errorf("error %q, want invalid_grant", got)
		}
	})
}

func TestTokenEndpointRawErrors(t *testing.T) {
	e := newEnv(t, KindAidants)
	tokenURL := e.idp.Issuer() + "/token"
	tests := []struct {
		name   string
		form   url.Values
		basic  bool
		status int
		code   string
	}{
		{"no client authentication", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, false, 401, "invalid_client"},
		{"unsupported grant", url.Values{"grant_type": {"password"}}, true, 400, "unsupported_grant_type"},
		{"missing grant", url.Values{}, true, 400, "invalid_request"},
		{"missing verifier", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {e.callback}}, true, 400, "invalid_request"},
		{"two authentication methods", url.Values{"grant_type": {"authorization_code"}, "client_secret": {testSecret}}, true, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, tokenURL, strings.NewReader(tt.form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.basic {
				req.SetBasicAuth(testClientID, testSecret)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error string `json:"error"`
			}
			if err := decodeJSON(resp, &body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || body.Error != tt.code {
				t.Errorf("status %d error %q, want %d %q", resp.StatusCode, body.Error, tt.status, tt.code)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", resp.Header.Get("Cache-Control"))
			}
		})
	}
}

func TestUserinfoRefusesTokenOutsideTheHeader(t *testing.T) {
	e := newEnv(t, KindAidants)
	cfg := e.config(aidantScopes...)
	a := e.newAttempt(cfg)
	tok, _, _ := e.mustExchange(cfg, a, e.login(a, SubCamille))
	endpoint := e.rp.UserInfoEndpoint()

	tests := []struct {
		name, method, target, bearer string
		status                       int
	}{
		{"header", http.MethodGet, endpoint, tok.AccessToken, http.StatusOK},
		{"header with POST", http.MethodPost, endpoint, tok.AccessToken, http.StatusOK},
		{"query string", http.MethodGet, endpoint + "?access_token=" + url.QueryEscape(tok.AccessToken), "", http.StatusUnauthorized},
		{"query string and header", http.MethodGet, endpoint + "?access_token=" + url.QueryEscape(tok.AccessToken), tok.AccessToken, http.StatusUnauthorized},
		{"no token", http.MethodGet, endpoint, "", http.StatusUnauthorized},
		{"unknown token", http.MethodGet, endpoint, "inconnu", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := userinfoRequest(t, t.Context(), tt.method, tt.target, tt.bearer)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == http.StatusUnauthorized && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("expired token", func(t *testing.T) {
		e.clock.Advance(accessTokenTTL + time.Second)
		resp := userinfoRequest(t, t.Context(), http.MethodGet, endpoint, tok.AccessToken)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
}
