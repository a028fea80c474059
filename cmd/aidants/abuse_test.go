package main

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"aidants/store"
)

// TestAbuseIsThrottledAndJournaledOnce sends, from one address, many
// wrong consent links and many token requests with a wrong secret: past
// the configured numbers each gets 429 with Retry-After, the journal gets
// one abuse.throttled event per limit and window — with the count, never
// one per request —, and once the window has passed requests are served
// again.
func TestAbuseIsThrottledAndJournaledOnce(t *testing.T) {
	j := newJournalSetup(t, store.SQLite, "abuse.aidants.invalid/audit")
	j.tables = `[limits]
window = "2s"
consent_links = 5
token_failures = 4
sign_in = 0
verify = 0
auditor_api = 0`
	out := j.cli().ok("service", "add", "--name", "Impôts", "--redirect-uri", "https://impots.example/retour",
		"--demarches", "argent", "--auth", "client_secret_basic")
	id := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(out)[1]
	s := j.serve()
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	statuses := func(n int, do func(i int) *http.Response) []int {
		var got []int
		for i := range n {
			resp := do(i)
			resp.Body.Close()
			got = append(got, resp.StatusCode)
			if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
		return got
	}
	links := statuses(30, func(i int) *http.Response {
		resp, err := c.Get(fmt.Sprintf("%s/consentement?t=faux-%d", s.URL, i))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	})
	if links[4] == http.StatusTooManyRequests || links[5] != http.StatusTooManyRequests || links[29] != http.StatusTooManyRequests {
		t.Fatalf("wrong consent links: %v", links)
	}
	tokens := statuses(12, func(i int) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/oidc/token", strings.NewReader(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(id), "pas-le-secret")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	})
	if tokens[3] != http.StatusUnauthorized || tokens[4] != http.StatusTooManyRequests || tokens[11] != http.StatusTooManyRequests {
		t.Fatalf("wrong client secrets: %v", tokens)
	}
	time.Sleep(3 * time.Second)
	db := mustOpen(t, j)
	var events []string
	db.R.Select(&events, `SELECT body FROM audit_events WHERE type = 'abuse.throttled' ORDER BY idx`)
	if len(events) != 2 || !strings.Contains(strings.Join(events, " "), `"limit":"consent_links"`) || !strings.Contains(strings.Join(events, " "), `"limit":"token_failures"`) ||
		!strings.Contains(strings.Join(events, " "), `"refused":25`) {
		t.Fatalf("abuse.throttled events: %v", events)
	}
	if strings.Contains(strings.Join(events, " "), "127.0.0.1") {
		t.Fatal("an address in the journal")
	}
	resp, err := c.Get(s.URL + "/consentement?t=encore-faux")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		t.Fatal("still throttled after the window")
	}
}
