package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"aidants/devidp"
	"aidants/keys"
	"aidants/store"
	"aidants/store/storetest"
)

// TestBackupWhileServingRestoresAndVerifies: a copy taken while aidants
// sign in is a database the service opens, whose journal verifies.
func TestBackupWhileServingRestoresAndVerifies(t *testing.T) {
	s := startDev(t, "")
	c := cli{t, []string{"--dev", "--data", s.Data}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var logins atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				b := browser(t)
				if _, status, _ := signInAidant(t, b, s, devidp.SubCamille); status == http.StatusOK {
					logins.Add(1)
				}
			}
		}()
	}
	for logins.Load() < 5 {
		if t.Failed() {
			break
		}
	}
	file := filepath.Join(t.TempDir(), "copie.db")
	out := c.ok("backup", file)
	close(stop)
	wg.Wait()
	if !strings.Contains(out, "backup written to "+file) {
		t.Fatalf("backup said: %s", out)
	}
	// Restore: a data directory with the copy as its database.
	restored := t.TempDir()
	entries, _ := os.ReadDir(s.Data)
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), "aidants.db") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.Data, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(restored, e.Name()), b, 0o600)
	}
	b, _ := os.ReadFile(file)
	os.WriteFile(filepath.Join(restored, "aidants.db"), b, 0o600)
	verdict := cli{t, []string{"--dev", "--data", restored}}.ok("audit", "verify")
	m := regexp.MustCompile(`OK: (\d+) events`).FindStringSubmatch(verdict)
	if m == nil || m[1] == "0" {
		t.Fatalf("audit verify on the restored copy: %s", verdict)
	}
	if out := (cli{t, []string{"--dev", "--data", restored}}).ok("aidant", "list"); !strings.Contains(out, "camille") {
		t.Errorf("the restored copy lacks the aidants:\n%s", out)
	}
	// Mistakes: an existing file, no file.
	if _, err := c.run("backup", file); err == nil || !strings.Contains(oneLine(err), "already exists") {
		t.Errorf("backup over an existing file: %v", err)
	}
	if _, err := c.run("backup"); err == nil || !strings.Contains(oneLine(err), "aidants backup FILE") {
		t.Errorf("backup without a file: %v", err)
	}
}

// TestKeysRotateKeepsOldKeysPublished: after `keys rotate` the JWKS holds
// the new keys and the old ones, new signatures use a new key, and the
// journal has the operator's keys.rotated. (A running server reads the
// key table again within 30 s: package keys tests that.)
func TestKeysRotateKeepsOldKeysPublished(t *testing.T) {
	dir := t.TempDir()
	c := cli{t, []string{"--dev", "--data", dir}}
	c.ok("migrate")
	open := func() *instance {
		in, err := openFromFlags(t.Context(), &envFlags{dev: true, data: dir}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(in.Close)
		return in
	}
	kids := func(in *instance) map[string]bool {
		set, err := in.keys.JWKS(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, k := range set.Keys {
			out[k.KeyID] = true
		}
		return out
	}
	before := kids(open())
	out := c.ok("keys", "rotate")
	m := regexp.MustCompile(`new signing keys: (.+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys rotate said: %s", out)
	}
	fresh := strings.Split(m[1], ", ")
	in := open()
	after := kids(in)
	for kid := range before {
		if !after[kid] {
			t.Errorf("old key %s left the JWKS at rotation", kid)
		}
	}
	for _, kid := range fresh {
		if !after[kid] || before[kid] {
			t.Errorf("new key %s: published %v, existed before %v", kid, after[kid], before[kid])
		}
	}
	for _, use := range []keys.Use{keys.UseMandate, keys.UseToken} {
		k, err := in.keys.Signing(t.Context(), use, jose.ES256)
		if err != nil || !contains(fresh, k.KeyID) {
			t.Errorf("%v signs with %s, not a new key %v (%v)", use, k.KeyID, fresh, err)
		}
	}
	var n int
	in.db.R.Get(&n, `SELECT COUNT(*) FROM audit_events WHERE type = 'keys.rotated' AND body LIKE '%"operator"%'`)
	if n != 1 {
		t.Errorf("%d keys.rotated events by the operator", n)
	}
	if out := c.ok("audit", "verify"); !strings.Contains(out, "OK:") {
		t.Errorf("audit verify: %s", out)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestBackupOnPostgreSQL(t *testing.T) {
	if _, err := exec.LookPath("pg_restore"); err != nil {
		storetest.SkipOrFail(t, "pg_dump and pg_restore are not installed")
	}
	c := cli{t: t, base: []string{"--config", productionConfig(t, store.Postgres)}}
	c.ok("migrate")
	c.ok("org", "add", "--name", "Structure", "--siret", demoSIRET)
	file := filepath.Join(t.TempDir(), "copie.dump")
	if out := c.ok("backup", file); !strings.Contains(out, "pg_restore") {
		t.Fatalf("backup said: %s", out)
	}
	list, err := exec.Command("pg_restore", "--list", file).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "audit_events") || !strings.Contains(string(list), "organisations") {
		t.Fatalf("pg_restore --list: %v\n%s", err, list)
	}
}
