package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"aidants/store"
	"aidants/store/storetest"
)

// docBlock returns the shell block of docs/OPERATIONS.md marked
// "<!-- tested: name -->".
func docBlock(t *testing.T, name string) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- tested: " + regexp.QuoteMeta(name) + " -->\n```sh\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatalf("docs/OPERATIONS.md has no tested block %q", name)
	}
	return string(m[1])
}

// runDoc runs a block of the guide as written, with its paths replaced by
// the test's, the aidants command being this test binary.
func runDoc(t *testing.T, name string, paths map[string]string, env ...string) (string, error) {
	t.Helper()
	script := docBlock(t, name)
	for from, to := range paths {
		script = strings.ReplaceAll(script, from, to)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-e", "-c", script)
	cmd.Env = append(os.Environ(), append(env, "PATH="+aidantsOnPath(t)+":"+os.Getenv("PATH"))...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestOperationsKeygenRecipe makes the journal's key exactly as the guide
// says: the file is its owner's only, holds a key the service takes, and
// is never overwritten.
func TestOperationsKeygenRecipe(t *testing.T) {
	etc := t.TempDir()
	paths := map[string]string{"/etc/aidants": etc}
	out, err := runDoc(t, "keygen", paths)
	if err != nil || !strings.Contains(out, "aidants.example.fr/audit+") {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	st, err := os.Stat(filepath.Join(etc, "audit.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("audit.key: %v %v", err, st)
	}
	if out, err := runDoc(t, "keygen", paths); err == nil || !strings.Contains(out, "exists") {
		t.Fatalf("keygen over an existing key: %v\n%s", err, out)
	}
	j := newJournalSetup(t, store.SQLite, "aidants.example.fr/audit")
	j.keyFile = filepath.Join(etc, "audit.key")
	if out := j.cli().ok("migrate"); !strings.Contains(out, "schema") {
		t.Fatalf("migrate with the key: %s", out)
	}
	out, _ = (cli{t: t}).run("check", "--config", j.config())
	if !strings.Contains(out, "ok    journal signing key: aidants.example.fr/audit") {
		t.Fatalf("check with the key:\n%s", out)
	}
}

// TestOperationsBackupAndRestore takes a backup while the service writes,
// loses the database, and restores it following the guide, on each
// engine: the restored database serves, passes audit verify, and takes
// new writes.
func TestOperationsBackupAndRestore(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			if d == store.Postgres {
				if _, err := exec.LookPath("pg_restore"); err != nil {
					storetest.SkipOrFail(t, "pg_dump and pg_restore are not installed")
				}
			}
			j := newJournalSetup(t, d, "restore.aidants.invalid/audit")
			j.addOrganisations(0, 3)
			s := j.serve()
			backups := t.TempDir()
			paths := map[string]string{"/etc/aidants/config.toml": j.config(), "/var/backups/aidants": backups}

			// Writes go on while the backup is taken.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 100; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := j.cli().run("org", "add", "--name", "Sous charge", "--siret", luhnSIRET(i)); err != nil {
						t.Errorf("a write under load: %v", err)
						return
					}
				}
			}()
			time.Sleep(300 * time.Millisecond)
			out, err := runDoc(t, "backup", paths, "AIDANTS_DATABASE_DSN="+j.dsn)
			time.Sleep(200 * time.Millisecond)
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatalf("backup: %v\n%s", err, out)
			}
			s.Stop()

			// The database is lost.
			if d == store.SQLite {
				paths["/var/lib/aidants"] = filepath.Dir(j.dsn)
				for _, suffix := range []string{"", "-wal", "-shm"} {
					os.Remove(j.dsn + suffix)
				}
			} else {
				j.dsn = storetest.PostgresDSN(t) // an empty database
			}
			out, err = runDoc(t, "restore-"+string(d), paths, "AIDANTS_DATABASE_DSN="+j.dsn)
			if err != nil || !strings.Contains(out, "audit verify: OK") {
				t.Fatalf("restore: %v\n%s", err, out)
			}
			j.serve()
			j.addOrganisations(500, 1)
			if out := j.cli().ok("audit", "verify"); !strings.Contains(out, "OK") {
				t.Fatalf("verify after the restore and a write: %s", out)
			}
		})
	}
}
