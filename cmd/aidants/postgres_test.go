package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"aidants/audit"
	"aidants/devidp"
	"aidants/store/storetest"
)

// TestTwoServersOnOnePostgresKeepOneHistory runs two real server processes
// on one PostgreSQL database, signs people in on both at once, and checks
// that the journal is one linear history that verifies.
func TestTwoServersOnOnePostgresKeepOneHistory(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	dir := t.TempDir()
	key, _ := audit.GenerateKey("two.aidants.invalid/audit")
	keyFile := filepath.Join(dir, "audit.key")
	os.WriteFile(keyFile, []byte(key), 0o600)
	addrs := []string{freeAddr(t), freeAddr(t)}

	// The aidants' provider both servers use, as ProConnect would be.
	mux := http.NewServeMux()
	idp := httptest.NewServer(mux)
	defer idp.Close()
	var redirects []string
	for _, a := range addrs {
		redirects = append(redirects, "http://"+a+"/connexion/aidant/retour")
	}
	p, err := devidp.New(devidp.Options{Issuer: idp.URL + "/idp", Kind: devidp.KindAidants,
		Identities: devidp.AidantIdentities("98765432100015"),
		Clients:    []devidp.Client{{ID: "aidants", Secret: "s3cret", RedirectURIs: redirects}}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/idp/", p)

	secret := "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
	config := func(addr string) string {
		path := filepath.Join(dir, strings.ReplaceAll(addr, ":", "_")+".toml")
		os.WriteFile(path, []byte(fmt.Sprintf(`
[server]
public_url = "http://%s"
listen = %q
[database]
driver = "postgres"
dsn = %q
[session]
secret = %q
[aidants_provider]
issuer = %q
client_id = "aidants"
client_secret = "s3cret"
[franceconnect]
issuer = "https://franceconnect.test.invalid"
client_id = "f"
client_secret = "s"
[audit]
origin = "two.aidants.invalid/audit"
signing_key_file = %q
witness_state_file = %q
[keys]
encryption_secret = %q
[provider]
pairwise_secret = %q
[log]
level = "warn"
`, addr, addr, dsn, secret, idp.URL+"/idp", keyFile, filepath.Join(dir, strings.ReplaceAll(addr, ":", "_")+".witness-state"), secret, secret)), 0o600)
		return path
	}
	cfg1, cfg2 := config(addrs[0]), config(addrs[1])
	c := cli{t: t, base: []string{"--config", cfg1}}
	c.ok("org", "add", "--name", "Une structure", "--siret", "98765432100015")
	c.ok("aidant", "add", "--org", "98765432100015", "--email", devidp.EmailCamille, "--given-name", "Camille",
		"--family-name", "Martin", "--habilitated-until", "2099-12-31")

	urls := []string{startChild(t, "serve", "--config", cfg1), startChild(t, "serve", "--config", cfg2)}
	const perServer = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	logins := 0
	for i := range 2 * perServer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := urls[i%2]
			sub := devidp.SubCamille
			if i%4 == 3 {
				sub = devidp.SubDominique // refused: no second factor
			}
			page, status, _ := pickIdentity(t, browser(t), base+"/connexion/aidant", sub)
			mu.Lock()
			defer mu.Unlock()
			if sub == devidp.SubCamille {
				if status != http.StatusOK || !strings.HasSuffix(page, "/tableau-de-bord") {
					t.Errorf("sign-in on %s: %d at %s", base, status, page)
				}
				logins++
			} else if status != http.StatusForbidden {
				t.Errorf("refusal on %s: %d", base, status)
			}
		}()
	}
	wg.Wait()

	out := c.ok("audit", "verify")
	want := 3 + 2*perServer // keys.rotated (first start), org.created, aidant.created, one per sign-in or refusal
	if !strings.Contains(out, fmt.Sprintf("OK: %d events", want)) {
		t.Fatalf("audit verify: %s (want %d events)", out, want)
	}
	t.Logf("%d sign-ins and %d refusals on two servers: %s", logins, 2*perServer-logins, strings.TrimSpace(out))
}
