package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aidants/audit"
	"aidants/store"
	"aidants/store/storetest"
)

// cli runs one command line and returns stdout, or fails the test.
type cli struct {
	t    *testing.T
	base []string // --dev --data DIR, or --config FILE
}

func (c cli) run(args ...string) (string, error) {
	c.t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append(args, c.base...), &out, &errb)
	return out.String(), err
}

func (c cli) ok(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("aidants %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// productionConfig writes a configuration file for a database of the given
// engine, with every secret set.
func productionConfig(t *testing.T, d store.Dialect) string {
	t.Helper()
	driver, dsn := storetest.DSN(t, d)
	key, err := audit.GenerateKey("test.aidants.invalid/audit")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "audit.key")
	os.WriteFile(keyFile, []byte(key+"\n"), 0o600)
	secret := "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
	cfg := fmt.Sprintf(`
[server]
public_url = "https://aidants.test.invalid"
[database]
driver = %q
dsn = %q
[session]
secret = %q
[aidants_provider]
issuer = "https://proconnect.test.invalid"
client_id = "a"
client_secret = "s"
[franceconnect]
issuer = "https://franceconnect.test.invalid"
client_id = "f"
client_secret = "s"
[audit]
origin = "test.aidants.invalid/audit"
signing_key_file = %q
witness_state_file = %q
[keys]
encryption_secret = %q
[provider]
pairwise_secret = %q
`, driver, dsn, secret, keyFile, filepath.Join(dir, "witness-state"), secret, secret)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOperatorCommandsOnBothEngines(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			c := cli{t: t, base: []string{"--config", productionConfig(t, d)}}
			if out := c.ok("migrate"); !strings.Contains(out, "schema version") {
				t.Fatalf("migrate: %s", out)
			}
			c.ok("org", "add", "--name", "France Services de Nantes", "--siret", "98765432100015", "--demarches", "argent,social")
			c.ok("org", "add", "--name", "Médiathèque", "--siret", "13579246800013")
			out := c.ok("org", "list")
			if !strings.Contains(out, "France Services de Nantes") || !strings.Contains(out, "social,argent") || !strings.Contains(out, "Médiathèque") {
				t.Fatalf("org list:\n%s", out)
			}
			c.ok("org", "update", "--siret", "13579246800013", "--name", "Médiathèque de Rezé", "--demarches", "all")
			if out := c.ok("org", "list"); !strings.Contains(out, "Médiathèque de Rezé") {
				t.Fatalf("org update not applied:\n%s", out)
			}
			c.ok("aidant", "add", "--org", "98765432100015", "--email", "Camille.Martin@Example.org", "--given-name", "Camille",
				"--family-name", "Martin", "--habilitated-until", "2030-12-31", "--referent")
			out = c.ok("aidant", "list", "--org", "98765432100015")
			if !strings.Contains(out, "camille.martin@example.org") || !strings.Contains(out, "aidant,referent") || !strings.Contains(out, "pending first sign-in") {
				t.Fatalf("aidant list:\n%s", out)
			}
			c.ok("aidant", "disable", "--email", "camille.martin@example.org", "--reason", "Congé de longue durée")
			if out := c.ok("aidant", "list"); !strings.Contains(out, "disabled") {
				t.Fatalf("aidant disable not applied:\n%s", out)
			}
			c.ok("aidant", "enable", "--email", "camille.martin@example.org")
			c.ok("aidant", "habilitate", "--email", "camille.martin@example.org", "--until", "2031-06-30")
			if out := c.ok("aidant", "list"); !strings.Contains(out, "2031-06-30") || strings.Contains(out, "disabled") {
				t.Fatalf("aidant enable/habilitate not applied:\n%s", out)
			}
			// Every change is in the journal, which verifies: the seven
			// changes above and the signing keys made at first start.
			out = c.ok("audit", "verify")
			if !strings.Contains(out, "OK: 8 events") {
				t.Fatalf("audit verify: %s", out)
			}
			if out := c.ok("audit", "checkpoint"); !strings.HasPrefix(out, "test.aidants.invalid/audit\n8\n") {
				t.Fatalf("audit checkpoint:\n%s", out)
			}
		})
	}
}

func TestOperatorMistakesGiveOneClearLineAndChangeNothing(t *testing.T) {
	c := cli{t: t, base: []string{"--dev", "--data", t.TempDir()}}
	c.ok("org", "add", "--name", "Une structure", "--siret", "98765432100015")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"org", "add", "--name", "X", "--siret", "12345"}, "14 digits"},
		{[]string{"org", "add", "--name", "X", "--siret", "12345678901235"}, "not a valid SIRET"},
		{[]string{"org", "add", "--name", "Doublon", "--siret", "98765432100015"}, "already exists"},
		{[]string{"org", "add", "--name", "X", "--siret", "13579246800013", "--demarches", "argent,cuisine"}, `unknown démarche "cuisine"`},
		{[]string{"org", "add", "--siret", "13579246800013"}, "--name is required"},
		{[]string{"org", "add", "--nom", "X"}, "flag provided but not defined: -nom"},
		{[]string{"org", "update", "--siret", "13579246800013", "--name", "X"}, "not found"},
		{[]string{"aidant", "add", "--org", "98765432100015", "--email", "pas-un-email", "--given-name", "A", "--family-name", "B", "--habilitated-until", "31/12/2030"}, "not an email address"},
		{[]string{"aidant", "disable", "--email", "personne@example.org", "--reason", "Départ"}, "not found"},
		{[]string{"aidant", "frobnicate"}, "expected one of add, disable, enable, habilitate, list"},
		{[]string{"teleport"}, `unknown command "teleport"`},
	}
	for _, tc := range cases {
		_, err := c.run(tc.args...)
		if err == nil {
			t.Errorf("aidants %s: succeeded", strings.Join(tc.args, " "))
			continue
		}
		line := oneLine(err)
		if !strings.Contains(line, tc.want) || strings.Contains(line, "\n") {
			t.Errorf("aidants %s: %q, want one line with %q", strings.Join(tc.args, " "), line, tc.want)
		}
	}
	// Both mistakes of the bad aidant are reported together.
	_, err := c.run("aidant", "add", "--org", "98765432100015", "--email", "pas-un-email", "--given-name", "A", "--family-name", "B", "--habilitated-until", "31/12/2030")
	if line := oneLine(err); !strings.Contains(line, "email") || !strings.Contains(line, "YYYY-MM-DD") {
		t.Errorf("two mistakes, one reported: %s", line)
	}
	var ue *usageError
	if _, err := c.run("org", "add"); !errors.As(err, &ue) {
		t.Errorf("a missing flag is not a usage error (exit 2): %v", err)
	}
	// Nothing changed: one organisation, its event and the first start's
	// signing keys.
	if out := c.ok("org", "list"); strings.Count(out, "\n") != 2 {
		t.Errorf("org list after mistakes:\n%s", out)
	}
	if out := c.ok("audit", "verify"); !strings.Contains(out, "OK: 2 events") {
		t.Errorf("audit verify: %s", out)
	}
}

func TestConfigAndDevAreExclusiveAndRequired(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"org", "list"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "--config FILE, or --dev") {
		t.Errorf("no --config nor --dev: %v", err)
	}
	if err := run(context.Background(), []string{"org", "list", "--dev", "--config", "x.toml"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("--dev and --config: %v", err)
	}
	if err := run(context.Background(), []string{"serve", "--dev", "--data", t.TempDir(), "--listen", "0.0.0.0:0"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Errorf("dev on a public address: %v", err)
	}
	if err := run(context.Background(), []string{"version"}, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "aidants ") {
		t.Errorf("version: %v %q", err, out.String())
	}
}

// TestDisablingAnAidantKeepsTheReasonErasable: the operator says why; the
// text goes to the erasable table and the event carries only its hash; a
// text changed behind the journal's back fails `audit verify`; erased, it
// is gone for good and the journal still verifies, with text.erased.
func TestDisablingAnAidantKeepsTheReasonErasable(t *testing.T) {
	dir := t.TempDir()
	c := cli{t: t, base: []string{"--dev", "--data", dir}}
	c.ok("org", "add", "--name", "Une structure", "--siret", "98765432100015")
	c.ok("aidant", "add", "--org", "98765432100015", "--email", "sacha@example.org", "--given-name", "Sacha",
		"--family-name", "Petit", "--habilitated-until", "2030-12-31")
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"aidant", "disable", "--email", "sacha@example.org"}, "--reason is required"},
		{[]string{"aidant", "disable", "--email", "sacha@example.org", "--reason", "   "}, "empty"},
		{[]string{"aidant", "disable", "--email", "sacha@example.org", "--reason", strings.Repeat("x", 2001)}, "longer than 2000"},
		{[]string{"audit", "erase-text", "--sha256", strings.Repeat("0", 64)}, "no text with this hash"},
	} {
		if _, err := c.run(bad.args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("aidants %s: %v, want %q", strings.Join(bad.args, " "), err, bad.want)
		}
	}
	const reason = "A quitté la structure le 30 novembre"
	c.ok("aidant", "disable", "--email", "sacha@example.org", "--reason", reason)

	db, err := store.Open(context.Background(), "sqlite", filepath.Join(dir, "aidants.db"), store.Options{NoCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var body string
	if err := db.R.Get(&body, `SELECT body FROM audit_events WHERE body LIKE '%aidant.disabled%'`); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body, "quitté") {
		t.Fatalf("the event carries the text: %s", body)
	}
	var ev struct {
		Detail map[string]string `json:"detail"`
	}
	json.Unmarshal([]byte(body), &ev)
	hash := ev.Detail["text_sha256"]
	if got, err := audit.FreeTextOf(context.Background(), db, hash); err != nil || got != reason {
		t.Fatalf("the text behind the event's hash: %q, %v", got, err)
	}
	c.ok("audit", "verify")

	// Changed unseen: verify says so.
	if _, err := db.W.Exec(`UPDATE free_texts SET body = ? WHERE hash = ?`, "Faute grave", hash); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run("audit", "verify"); err == nil || !strings.Contains(err.Error(), "free text "+hash+" was changed") {
		t.Fatalf("audit verify after a text was changed: %v", err)
	}
	db.W.Exec(`UPDATE free_texts SET body = ? WHERE hash = ?`, reason, hash)

	if out := c.ok("audit", "erase-text", "--sha256", hash); !strings.Contains(out, "erased the text") {
		t.Fatalf("erase-text: %s", out)
	}
	if _, err := audit.FreeTextOf(context.Background(), db, hash); !errors.Is(err, audit.ErrErased) {
		t.Fatalf("an erased text reads %v", err)
	}
	var salt, left sql.NullString
	db.R.QueryRow(`SELECT salt, body FROM free_texts WHERE hash = ?`, hash).Scan(&salt, &left)
	if salt.Valid || left.Valid {
		t.Fatalf("the erased row keeps salt %v, body %v", salt, left)
	}
	if out := c.ok("audit", "verify"); !strings.Contains(out, "OK") {
		t.Fatalf("audit verify after the erasure: %s", out)
	}
	var n int
	db.R.Get(&n, `SELECT COUNT(*) FROM audit_events WHERE body LIKE '%text.erased%' AND body LIKE '%`+hash+`%'`)
	if n != 1 {
		t.Fatalf("%d text.erased events for the hash, want 1", n)
	}
	if _, err := c.run("audit", "erase-text", "--sha256", hash); err == nil {
		t.Fatal("a text erased twice")
	}
}
