package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"aidants/audit"
	"aidants/internal/testtool"
)

// zitadelVersion is the zitadel/oidc release whose example OpenID provider
// signs aidants in, in the acceptance test: an aidants' provider that is
// not ProConnect, written by others. It always sends amr ["pwd"] and no
// acr; its issuer is http://localhost:PORT/, with the slash.
const zitadelVersion = "v3.51.17"

// zitadelTool is its server, installed once per machine (CI installs it
// beforehand, .ci/run).
var zitadelTool = testtool.GoTool{
	Name:     "the zitadel example OpenID provider " + zitadelVersion,
	Dir:      "zitadel-oidc-" + zitadelVersion,
	Packages: []string{"github.com/zitadel/oidc/v3/example/server@" + zitadelVersion},
	Binaries: []string{"server"},
}

// zitadelUser is a user of the example provider's USERS_FILE (its
// storage.User).
type zitadelUser struct {
	ID                string
	Username          string
	Password          string
	FirstName         string
	LastName          string
	Email             string
	EmailVerified     bool
	PreferredLanguage string
}

// startZitadel runs the example provider until the test ends, with these
// users and the client "web" (secret "secret") allowed to redirect to
// redirects, and returns its issuer.
func startZitadel(t *testing.T, redirects []string, users ...zitadelUser) string {
	t.Helper()
	paths := zitadelTool.Install(t)
	byID := map[string]zitadelUser{}
	for _, u := range users {
		byID[u.ID] = u
	}
	usersFile := filepath.Join(t.TempDir(), "users.json")
	b, _ := json.Marshal(byID)
	if err := os.WriteFile(usersFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(freeAddr(t))
	cmd := exec.Command(paths[0])
	cmd.Env = append(os.Environ(), "PORT="+port, "USERS_FILE="+usersFile, "REDIRECT_URI="+strings.Join(redirects, ","))
	p, err := testtool.StartCmd(cmd)
	if err != nil {
		testtool.SkipOrFail(t, "cannot start the zitadel example OpenID provider: %v", err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("zitadel example provider output:\n%s", p.Output())
		}
	})
	issuer := "http://localhost:" + port + "/"
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(issuer + ".well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return issuer
			}
		}
		select {
		case <-p.Done():
			t.Fatalf("the zitadel example provider exited: %v\n%s", p.Err(), p.Output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the zitadel example provider did not answer within 20s:\n%s", p.Output())
		}
	}
}

var zitadelLoginID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// zitadelSignIn starts an aidant's sign-in at the instance, logs in at the
// example provider with its form (username, password), follows the
// provider's redirects back to the instance's callback, opens it and
// returns what the instance answered.
func zitadelSignIn(t *testing.T, b *stepper, base, username, password string) (status int, loc, body string) {
	t.Helper()
	status, next, body := b.do(http.MethodGet, base+"/connexion/aidant", nil)
	if status != http.StatusSeeOther {
		t.Fatalf("start: %d\n%s", status, firstLines(body))
	}
	for range 10 {
		if strings.HasPrefix(next, base) {
			return b.do(http.MethodGet, next, nil) // the instance's callback
		}
		status, loc, body = b.do(http.MethodGet, next, nil)
		if status == http.StatusOK {
			// The provider's login form.
			m := zitadelLoginID.FindStringSubmatch(body)
			if m == nil {
				t.Fatalf("no login form at %s:\n%s", next, firstLines(body))
			}
			action, _ := url.Parse(next)
			action, _ = action.Parse("/login/username")
			status, loc, body = b.do(http.MethodPost, action.String(), url.Values{"id": {m[1]}, "username": {username}, "password": {password}})
		}
		if loc == "" {
			t.Fatalf("stuck at the provider (%d):\n%s", status, firstLines(body))
		}
		u, _ := url.Parse(next)
		l, _ := u.Parse(loc)
		next = l.String()
	}
	t.Fatalf("more than ten redirects at the provider")
	return
}

// TestZitadelProviderSignsInWithPwdAllowedAndIsRefusedByDefault is the
// acceptance of issue 12 with an aidants' provider that is not ProConnect:
// the zitadel example OpenID provider, which sends amr ["pwd"] and no acr.
// With the default mfa_amrs (["mfa"]) the aidant is refused with the page
// asking for a second factor, and the log names the amr that arrived;
// with mfa_amrs = ["pwd"] (a test setting) the same aidant signs in, is
// bound by their verified email, and reaches the dashboard. An aidant whose
// address the provider did not verify is matched only once the operator
// sets match_email_requires_verified = false.
func TestZitadelProviderSignsInWithPwdAllowedAndIsRefusedByDefault(t *testing.T) {
	const siret, email, password = "98765432100015", "claude.durand@france-services.example", "mot-de-passe-de-test"
	r := newRPInstance(t)
	const unverified = "lou.petit@france-services.example"
	issuer := startZitadel(t, []string{r.public + "/connexion/aidant/retour"}, zitadelUser{
		ID: "zitadel-claude", Username: "claude", Password: password, FirstName: "Claude", LastName: "Durand",
		Email: email, EmailVerified: true, PreferredLanguage: "fr",
	}, zitadelUser{
		ID: "zitadel-lou", Username: "lou", Password: password, FirstName: "Lou", LastName: "Petit",
		Email: unverified, EmailVerified: false, PreferredLanguage: "fr",
	})
	provider := func(extra string) string {
		return fmt.Sprintf("issuer = %q\nclient_id = \"web\"\nclient_secret = \"secret\"\nscopes = [\"openid\", \"profile\", \"email\"]\n%s", issuer, extra)
	}
	const fc = "issuer = \"https://franceconnect.test.invalid\"\nclient_id = \"f\"\nclient_secret = \"s\""
	r.configure(provider(""), fc)
	c := r.cli()
	c.ok("org", "add", "--name", "France services Test", "--siret", siret)
	c.ok("aidant", "add", "--org", siret, "--email", email, "--given-name", "Claude", "--family-name", "Durand", "--habilitated-until", "2099-12-31")
	c.ok("aidant", "add", "--org", siret, "--email", unverified, "--given-name", "Lou", "--family-name", "Petit", "--habilitated-until", "2099-12-31")

	// The default: "pwd" is no second factor.
	s := r.serve()
	status, _, body := zitadelSignIn(t, newStepper(t), s.URL, "claude", password)
	if status != http.StatusForbidden || !strings.Contains(body, "Double authentification nécessaire") {
		t.Fatalf("default mfa_amrs: %d\n%s", status, firstLines(body))
	}
	line := ""
	for l := range strings.Lines(s.Log.String()) {
		if strings.Contains(l, "sign-in refused") && strings.Contains(l, "reason=mfa_required") {
			line = l
		}
	}
	if !strings.Contains(line, "amr=[pwd]") || !strings.Contains(line, "provider=aidants") {
		t.Errorf("no log line naming the amr that arrived:\n%s", s.Log)
	}
	if strings.Contains(s.Log.String(), email) || strings.Contains(s.Log.String(), "Durand") {
		t.Errorf("the log names the aidant:\n%s", s.Log)
	}
	// The metrics count the refusal by its reason, and measured the
	// provider's answers.
	_, _, metrics := newStepper(t).do(http.MethodGet, s.URL+"/metrics", nil)
	for _, want := range []string{`aidants_signin_refusals_total{provider="aidants",reason="mfa_required"} 1`,
		`aidants_idp_request_duration_seconds_count{provider="aidants"}`, "aidants_sqlite_checkpoint_age_seconds", "aidants_sqlite_wal_bytes"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, `aidants_idp_request_duration_seconds_count{provider="aidants"} 0`) {
		t.Error("no request to the provider was measured")
	}
	s.Stop()
	db := r.db()
	if n := count(t, db, `SELECT COUNT(*) FROM sessions`); n != 0 {
		t.Errorf("%d sessions after the refusal", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = ?`, audit.AidantLoginRefused); n != 1 {
		t.Errorf("%d aidant.login_refused events, want 1", n)
	}

	// The operator accepts this provider's password alone.
	r.configure(provider(`mfa_amrs = ["pwd"]`), fc)
	s = r.serve()
	b := newStepper(t)
	status, loc, body := zitadelSignIn(t, b, s.URL, "claude", password)
	if status != http.StatusSeeOther || !strings.Contains(loc, "/structures") {
		t.Fatalf("mfa_amrs = [pwd]: %d %s\n%s", status, loc, firstLines(body))
	}
	if status, _, body = b.do(http.MethodGet, s.URL+"/tableau-de-bord", nil); status != http.StatusOK || !strings.Contains(body, "Bonjour Claude") {
		t.Fatalf("dashboard: %d\n%s", status, firstLines(body))
	}
	var bound struct {
		Issuer  string `db:"issuer"`
		Subject string `db:"subject"`
	}
	if err := db.R.Get(&bound, `SELECT issuer, subject FROM aidants WHERE email = ?`, email); err != nil {
		t.Fatal(err)
	}
	if bound.Issuer != issuer || bound.Subject != "zitadel-claude" {
		t.Errorf("bound to (%q, %q), want the zitadel identity", bound.Issuer, bound.Subject)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE type = ?`, audit.AidantLogin); n != 1 {
		t.Errorf("%d aidant.login events, want 1", n)
	}

	// Lou's address is not verified at this provider (which then leaves
	// email_verified out): by default, no pending aidant is matched by it.
	status, _, body = zitadelSignIn(t, newStepper(t), s.URL, "lou", password)
	if status != http.StatusForbidden || !strings.Contains(body, "Votre compte ne permet pas d'utiliser Aidants") {
		t.Fatalf("unverified email: %d\n%s", status, firstLines(body))
	}
	if !strings.Contains(s.Log.String(), "reason=unknown_account email_verified=absent") || strings.Contains(s.Log.String(), unverified) {
		t.Errorf("the log does not say why, or names the address:\n%s", s.Log)
	}
	s.Stop()

	// An operator whose provider vouches for every address it sends.
	r.configure(provider("mfa_amrs = [\"pwd\"]\nmatch_email_requires_verified = false"), fc)
	s = r.serve()
	if status, loc, body := zitadelSignIn(t, newStepper(t), s.URL, "lou", password); status != http.StatusSeeOther || !strings.Contains(loc, "/structures") {
		t.Fatalf("match_email_requires_verified = false: %d %s\n%s", status, loc, firstLines(body))
	}
}
