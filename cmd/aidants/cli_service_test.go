package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"aidants/store/storetest"
)

// jwksFiles writes a service's public JWKS and, for the mistakes, a JWKS
// holding the private key.
func jwksFiles(t *testing.T) (public, private string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := jose.JSONWebKey{Key: priv, KeyID: "k1", Algorithm: "ES256", Use: "sig"}
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}})
	all, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}})
	dir := t.TempDir()
	public, private = filepath.Join(dir, "public.json"), filepath.Join(dir, "private.json")
	os.WriteFile(public, pub, 0o600)
	os.WriteFile(private, all, 0o600)
	return public, private
}

func TestServiceCommandsOnBothEngines(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			c := cli{t: t, base: []string{"--config", productionConfig(t, d)}}
			public, _ := jwksFiles(t)
			out := c.ok("service", "add", "--name", "Caisse d'allocations", "--redirect-uri", "https://caf.example.fr/retour",
				"--redirect-uri", "https://caf.example.fr/retour2", "--post-logout-uri", "https://caf.example.fr/",
				"--demarches", "social,logement", "--jwks", public)
			if !strings.Contains(out, "client_id: svc_") || strings.Contains(out, "client_secret") {
				t.Fatalf("service add (private_key_jwt):\n%s", out)
			}
			out = c.ok("service", "add", "--name", "Impôts", "--redirect-uri", "https://impots.example.fr/cb",
				"--demarches", "argent", "--auth", "client_secret_basic", "--id-token-alg", "RS256", "--userinfo-signed")
			m := regexp.MustCompile(`client_secret: (\S+)`).FindStringSubmatch(out)
			if m == nil || !strings.Contains(out, "shown once") {
				t.Fatalf("service add (secret):\n%s", out)
			}
			list := c.ok("service", "list")
			for _, want := range []string{"Caisse d'allocations", "private_key_jwt", "social,logement", "https://caf.example.fr/retour",
				"Impôts", "client_secret_basic", "RS256", "USERINFO"} {
				if !strings.Contains(list, want) {
					t.Errorf("service list lacks %q:\n%s", want, list)
				}
			}
			if !regexp.MustCompile(`Impôts\s+client_secret_basic\s+RS256\s+signed\s`).MatchString(list) ||
				!regexp.MustCompile(`Caisse d'allocations\s+private_key_jwt\s+ES256\s+json\s`).MatchString(list) {
				t.Errorf("service list does not say whose userinfo is signed:\n%s", list)
			}
			caf := regexp.MustCompile(`(svc_\S+)\s+Caisse`).FindStringSubmatch(list)[1]
			out = c.ok("service", "update", "--client-id", caf, "--userinfo-signed", "true", "--id-token-alg", "RS256",
				"--name", "CAF", "--demarches", "social")
			if !strings.Contains(out, "updated service CAF") || !strings.Contains(out, "userinfo signed") || !strings.Contains(out, "RS256") {
				t.Errorf("service update printed:\n%s", out)
			}
			if list := c.ok("service", "list"); !regexp.MustCompile(`CAF\s+private_key_jwt\s+RS256\s+signed\s+social\s`).MatchString(list) {
				t.Errorf("service list after the update:\n%s", list)
			}
			if strings.Contains(list, m[1]) {
				t.Error("service list shows the secret")
			}
			// The secret is stored hashed only, and each registration is
			// in the journal, which verifies.
			in, err := openFromFlags(t.Context(), &envFlags{config: c.base[1]}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			db := in.db
			var hashes []string
			db.R.Select(&hashes, `SELECT COALESCE(secret_hash, '') FROM services`)
			for _, h := range hashes {
				if strings.Contains(h, m[1]) {
					t.Error("the secret is stored in clear")
				}
			}
			var n int
			db.R.Get(&n, `SELECT COUNT(*) FROM audit_events WHERE type = 'service.registered'`)
			if n != 2 {
				t.Errorf("%d service.registered events, want 2", n)
			}
			db.R.Get(&n, `SELECT COUNT(*) FROM audit_events WHERE type = 'service.updated'`)
			if n != 1 {
				t.Errorf("%d service.updated events, want 1", n)
			}
			if out := c.ok("audit", "verify"); !strings.Contains(out, "OK: 4 events") {
				t.Errorf("audit verify: %s", out)
			}
		})
	}
}

func TestServiceMistakesChangeNothing(t *testing.T) {
	c := cli{t: t, base: []string{"--dev", "--data", t.TempDir()}}
	c.ok("migrate")
	before := c.ok("service", "list")
	public, private := jwksFiles(t)
	ok := []string{"--name", "S", "--redirect-uri", "https://s.example.fr/cb", "--demarches", "argent"}
	with := func(extra ...string) []string {
		return append(append([]string{"service", "add"}, ok...), extra...)
	}
	cases := []struct {
		args []string
		want string
	}{
		{with(), "--jwks FILE is required"},
		{with("--jwks", private), "private key"},
		{with("--jwks", filepath.Join(t.TempDir(), "none.json")), "no such file"},
		{with("--auth", "client_secret_basic", "--jwks", public), "only for private_key_jwt"},
		{with("--auth", "magic"), "--auth"},
		{with("--jwks", public, "--id-token-alg", "HS256"), "ES256 or RS256"},
		{with("--jwks", public, "--redirect-uri", "http://s.example.fr/cb"), "https is required"},
		{with("--jwks", public, "--redirect-uri", "https://s.example.fr/cb#x"), "without fragment"},
		{with("--jwks", public, "--post-logout-uri", "/relative"), "absolute"},
		{[]string{"service", "add", "--name", "S", "--redirect-uri", "https://s.example.fr/cb", "--demarches", "argent,cuisine", "--jwks", public}, `unknown démarche "cuisine"`},
		{[]string{"service", "add", "--redirect-uri", "https://s.example.fr/cb", "--demarches", "argent"}, "--name is required"},
		{[]string{"service", "frobnicate"}, "expected one of add, list, update"},
		{[]string{"service", "update", "--userinfo-signed", "true"}, "--client-id is required"},
		{[]string{"service", "update", "--client-id", "svc_inconnu", "--userinfo-signed", "true"}, "not found"},
		{[]string{"service", "update", "--client-id", "CLIENT"}, "nothing to change"},
		{[]string{"service", "update", "--client-id", "CLIENT", "--userinfo-signed", "peut-être"}, "want true or false"},
		{[]string{"service", "update", "--client-id", "CLIENT", "--id-token-alg", "HS256"}, "ES256 or RS256"},
		{[]string{"service", "update", "--client-id", "CLIENT", "--demarches", "argent,cuisine"}, `unknown démarche "cuisine"`},
		{[]string{"service", "update", "--client-id", "CLIENT", "--demarches", ""}, "at least one démarche"},
		{[]string{"service", "update", "--client-id", "CLIENT", "--name", " ", "--id-token-alg", "none"}, "--name: give a name"},
		{[]string{"service", "update", "--client-id", "CLIENT", "--name", " ", "--id-token-alg", "none"}, "ES256 or RS256"},
	}
	// One service exists, so that updating it can go wrong.
	registered := c.ok("service", "add", "--name", "Existant", "--redirect-uri", "https://e.example.fr/cb", "--demarches", "argent", "--jwks", public)
	client := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(registered)[1]
	before = c.ok("service", "list")
	for _, tc := range cases {
		for i, a := range tc.args {
			if a == "CLIENT" {
				tc.args[i] = client
			}
		}
		_, err := c.run(tc.args...)
		if err == nil {
			t.Errorf("aidants %s: succeeded", strings.Join(tc.args, " "))
			continue
		}
		if line := oneLine(err); !strings.Contains(line, tc.want) || strings.Contains(line, "\n") {
			t.Errorf("aidants %s: %q, want one line with %q", strings.Join(tc.args, " "), line, tc.want)
		}
	}
	if after := c.ok("service", "list"); after != before {
		t.Errorf("a mistake registered a service:\n%s", after)
	}
}
