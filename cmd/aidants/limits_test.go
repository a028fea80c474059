package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"aidants/devidp"
	"aidants/store"
)

func request(t *testing.T, method, u string, body []byte, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestLimitsAndHeadersOfAProductionInstance checks what an operator
// deploying behind a reverse proxy relies on: a 9 MiB body to the token
// endpoint is cut at the API's bound; HSTS on every answer, the API's
// included; /metrics refused to a request that came through the proxy,
// answered with the token (configured, not on the command line); the
// client's address in the request log, taken from X-Forwarded-For only
// when a trusted proxy sent it.
func TestLimitsAndHeadersOfAProductionInstance(t *testing.T) {
	j := newJournalSetup(t, store.SQLite, "limits.aidants.invalid/audit")
	j.server = `trusted_proxies = ["127.0.0.1"]
metrics_token = "un-jeton-de-metriques-assez-long"`
	j.addOrganisations(0, 1)
	s := j.serve()

	resp := request(t, http.MethodPost, s.URL+"/oidc/token", bytes.Repeat([]byte("a"), 9<<20),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a 9 MiB token request: %d", resp.StatusCode)
	}
	for _, p := range []string{"/audit/key", "/", "/.well-known/openid-configuration"} {
		if r := request(t, http.MethodGet, s.URL+p, nil, nil); r.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("%s: no HSTS", p)
		}
	}
	proxied := map[string]string{"X-Forwarded-For": "203.0.113.9"}
	if r := request(t, http.MethodGet, s.URL+"/metrics", nil, proxied); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics through the proxy without the token: %d", r.StatusCode)
	}
	if r := request(t, http.MethodGet, s.URL+"/metrics", nil, map[string]string{"X-Forwarded-For": "203.0.113.9",
		"Authorization": "Bearer un-jeton-de-metriques-assez-long"}); r.StatusCode != http.StatusOK {
		t.Fatalf("/metrics with the token: %d", r.StatusCode)
	}
	request(t, http.MethodGet, s.URL+"/audit/key", nil, map[string]string{"X-Forwarded-For": "198.51.100.7, 127.0.0.1"})
	if !strings.Contains(s.Log.String(), "client=198.51.100.7") || !strings.Contains(s.Log.String(), "client=203.0.113.9") {
		t.Fatalf("the request log does not name the clients:\n%s", s.Log)
	}
}

// TestMetricsAreNotPublicThroughAProxy runs the development instance (no
// token, no trusted proxy): /metrics answers a client on loopback, and
// refuses one that says a proxy carried it.
func TestMetricsAreNotPublicThroughAProxy(t *testing.T) {
	s := startDev(t, "")
	if r := request(t, http.MethodGet, s.URL+"/metrics", nil, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("/metrics on loopback: %d", r.StatusCode)
	}
	if r := request(t, http.MethodGet, s.URL+"/metrics", nil, map[string]string{"X-Forwarded-For": "203.0.113.9"}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("/metrics through a proxy: %d", r.StatusCode)
	}
	// The development service's pages carry the site's security headers.
	if r := request(t, http.MethodGet, s.URL+"/dev/service", nil, nil); r.Header.Get("X-Frame-Options") != "DENY" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("/dev/service headers: %v", r.Header)
	}
}

// TestPersonalDownloadsAreNotCached signs a person in and downloads what
// is theirs: none of it may stay in a shared computer's cache.
func TestPersonalDownloadsAreNotCached(t *testing.T) {
	s := startDev(t, "")
	aidant := browser(t)
	signInAidant(t, aidant, s, devidp.SubCamille)
	id := createOnSite(t, aidant, s, devidp.SubJosephine, onSiteForm("argent"))
	for _, p := range []string{"/mandats/" + id + "/mandat.jwt", "/mandats/" + id, "/tableau-de-bord"} {
		resp, err := aidant.Get(s.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d, Cache-Control %q", p, resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	}
	person := browser(t)
	personSignIn(t, person, s, devidp.SubJosephine)
	for _, p := range []string{"/mon-espace/donnees.json", "/mon-espace/actions.csv", "/mon-espace"} {
		resp, err := person.Get(s.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d, Cache-Control %q", p, resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	}
}
