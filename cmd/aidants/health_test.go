package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"aidants/audit"
	"aidants/devidp"
	"aidants/store"
)

// smallFilesystem mounts a tmpfs of size bytes for the test (root only)
// and returns its directory.
func smallFilesystem(t *testing.T, size int) (string, bool) {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("AIDANTS_TEST_NO_TMPFS") != "" {
		return "", false
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Logf("no tmpfs (%v: %s)", err, out)
		return "", false
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir, true
}

// TestFullDiskAnswers503AndTheWriterRecovers runs the service with its
// database on a small filesystem, and fills it: a request that must write
// gets 503, Retry-After and the French page saying nothing was changed;
// /readyz is 503 while /healthz is 200; once space is freed the writer
// commits again by itself, /readyz is 200, and every acknowledged write is
// there. (Not root, no tmpfs: the database is made read-only instead, the
// other failure the service must answer the same way.)
func TestFullDiskAnswers503AndTheWriterRecovers(t *testing.T) {
	ctx := context.Background()
	dir, small := smallFilesystem(t, 16<<20)
	if !small {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "aidants.db")
	db, err := store.Open(ctx, "sqlite", path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s, in := startOn(t, db)
	if _, status, _ := signInAidant(t, browser(t), s, devidp.SubCamille); status != http.StatusOK {
		t.Fatalf("sign-in: %d", status)
	}
	acknowledged, _ := in.log.Latest(ctx)

	filler := filepath.Join(dir, "filler")
	if small {
		// Take every free block; the WAL's own blocks may still take a
		// few writes, so sign in until one fails.
		exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k").Run()
	} else if _, err := db.W.Exec(`PRAGMA query_only = ON`); err != nil {
		t.Fatal(err)
	}
	var status int
	var body string
	for range 200 {
		if status, body = trySignIn(t, s); status != http.StatusOK {
			break
		}
	}
	body = html.UnescapeString(body)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "Le service ne peut pas enregistrer pour le moment. Rien n'a été modifié.") {
		t.Fatalf("a sign-in with no room to write: %d\n%.400s", status, body)
	}
	if st, _ := fetch(t, s.URL+"/readyz"); st != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with no room to write: %d", st)
	}
	if st, _ := fetch(t, s.URL+"/healthz"); st != http.StatusOK {
		t.Fatalf("/healthz: %d", st)
	}
	if retry := lastRetryAfter; retry == "" {
		t.Fatal("the 503 carries no Retry-After")
	}

	// Room again: no restart needed.
	if small {
		os.Remove(filler)
	} else if _, err := db.W.Exec(`PRAGMA query_only = OFF`); err != nil {
		t.Fatal(err)
	}
	if page, status, _ := signInAidant(t, browser(t), s, devidp.SubCamille); status != http.StatusOK {
		t.Fatalf("a sign-in once there is room: %d at %s", status, page)
	}
	if st, body := fetch(t, s.URL+"/readyz"); st != http.StatusOK {
		t.Fatalf("/readyz after recovery: %d %s", st, body)
	}
	res, err := audit.Verify(ctx, db, in.log.VerifierKey(), acknowledged)
	if err != nil || res.Size <= acknowledged.Size {
		t.Fatalf("verify after the outage: %v %+v", err, res)
	}
	t.Logf("on a %s: %d events, all verified", map[bool]string{true: "full tmpfs", false: "read-only database"}[small], res.Size)
}

var lastRetryAfter string

// trySignIn signs Camille in, and returns the first status that is not a
// success or a redirect along the way (or the last page's).
func trySignIn(t *testing.T, s *testServer) (int, string) {
	t.Helper()
	c := browser(t)
	resp, err := c.Get(s.URL + "/connexion/aidant")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		lastRetryAfter = resp.Header.Get("Retry-After")
		return resp.StatusCode, string(b)
	}
	req, act := hiddenRequest.FindStringSubmatch(string(b)), formAction.FindStringSubmatch(string(b))
	if req == nil || act == nil {
		t.Fatalf("no identity form:\n%s", b)
	}
	action, _ := url.Parse(resp.Request.URL.String())
	action, _ = action.Parse(htmlUnescape(act[1]))
	resp, err = c.PostForm(action.String(), url.Values{"request": {req[1]}, "identity": {devidp.SubCamille}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	lastRetryAfter = resp.Header.Get("Retry-After")
	return resp.StatusCode, string(b)
}
