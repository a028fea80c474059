package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aidants/audit"
	"aidants/store"
)

// rpInstance is an instance served from a configuration file whose
// identity providers the test gives: the relying party as an operator
// deploys it, against providers the test runs.
type rpInstance struct {
	t      *testing.T
	dir    string
	addr   string // where it listens
	public string // http://addr
	config string // the configuration file
}

// newRPInstance picks the address of an instance with SQLite under a new
// directory; its configuration is written by configure.
func newRPInstance(t *testing.T) *rpInstance {
	t.Helper()
	addr := freeAddr(t)
	return &rpInstance{t: t, dir: t.TempDir(), addr: addr, public: "http://" + addr}
}

// configure writes the configuration file, the two provider tables being
// given as TOML bodies (issuer, client_id, client_secret, …). It may be
// called again between two serves.
func (r *rpInstance) configure(aidants, franceconnect string) {
	t := r.t
	t.Helper()
	// The journal's key is made once: a configuration written again
	// (other provider settings) serves the same journal.
	keyFile := filepath.Join(r.dir, "audit.key")
	if _, err := os.Stat(keyFile); err != nil {
		key, err := audit.GenerateKey("rp.aidants.invalid/audit")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	secret := "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
	cfg := fmt.Sprintf(`
[server]
public_url = %q
listen = %q
[database]
driver = "sqlite"
dsn = %q
[session]
secret = %q
[aidants_provider]
%s
[franceconnect]
%s
[audit]
origin = "rp.aidants.invalid/audit"
signing_key_file = %q
[keys]
encryption_secret = %q
[provider]
pairwise_secret = %q
[limits]
# These tests sign in dozens of times from one address; the limits have
# a test of their own (TestAbuseIsThrottledAndJournaledOnce).
sign_in = 0
[log]
level = "info"
`, r.public, r.addr, filepath.Join(r.dir, "aidants.db"), secret, aidants, franceconnect, keyFile, secret, secret)
	r.config = filepath.Join(r.dir, "config.toml")
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (r *rpInstance) cli() cli { return cli{t: r.t, base: []string{"--config", r.config}} }

// serve starts the instance until the test ends (or Stop).
func (r *rpInstance) serve() *testServer {
	r.t.Helper()
	return startServe(r.t, "", []string{"serve", "--config", r.config})
}

// db opens the instance's database, to read what it stored.
func (r *rpInstance) db() *store.DB {
	r.t.Helper()
	db, err := store.Open(context.Background(), "sqlite", filepath.Join(r.dir, "aidants.db"), store.Options{NoCheckpointer: true})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { db.Close() })
	return db
}

// stepper is a browser that does not follow redirects: the test sees, and
// may keep or change, each step of a sign-in.
type stepper struct {
	t *testing.T
	c *http.Client
}

func newStepper(t *testing.T) *stepper {
	jar, _ := cookiejar.New(nil)
	return &stepper{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request (a form when form is not nil, posted from a page of
// the site) and returns the status, the Location and the body, unescaped.
func (b *stepper) do(method, u string, form url.Values) (int, string, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	loc := ""
	if l, err := resp.Location(); err == nil {
		loc = l.String()
	}
	return resp.StatusCode, loc, html.UnescapeString(string(data))
}

// pick goes from a start (GET, or POST when form is not nil) to a
// development provider's page, picks sub there and returns the callback
// URL the provider sends the browser to, not opened.
func (b *stepper) pick(method, start string, form url.Values, sub string) string {
	b.t.Helper()
	status, authz, body := b.do(method, start, form)
	if status != http.StatusSeeOther || authz == "" {
		b.t.Fatalf("%s %s: %d, want a redirect to the provider:\n%s", method, start, status, body)
	}
	status, _, body = b.do(http.MethodGet, authz, nil)
	req, act := hiddenRequest.FindStringSubmatch(body), formAction.FindStringSubmatch(body)
	if status != http.StatusOK || req == nil || act == nil {
		b.t.Fatalf("provider page %s: %d\n%s", authz, status, body)
	}
	action, _ := url.Parse(authz)
	action, _ = action.Parse(act[1])
	status, cb, body := b.do(http.MethodPost, action.String(), url.Values{"request": {req[1]}, "identity": {sub}})
	if status != http.StatusSeeOther || cb == "" {
		b.t.Fatalf("pick %s: %d\n%s", sub, status, body)
	}
	return cb
}
