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
	"time"

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

// corruptPage overwrites the b-tree header of page number page of path
// (0: the last page) with garbage, as a failing disk would, and returns
// the page's number.
func corruptPage(t *testing.T, path string, page int64) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := int64(b[16])<<8 | int64(b[17])
	if page == 0 {
		page = int64(len(b)) / ps
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0x42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, (page-1)*ps); err != nil {
		t.Fatal(err)
	}
	return page
}

// rootPage is the first page of a table.
func rootPage(t *testing.T, path, table string) int64 {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite", path, store.Options{MaxOpenConns: 1, NoCheckpointer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var page int64
	if err := db.R.Get(&page, `SELECT rootpage FROM sqlite_master WHERE name = ?`, table); err != nil {
		t.Fatal(err)
	}
	return page
}

// TestDamagedDatabaseIsRefused damages a page of the database of a
// development instance, as a failing disk would: a page read at start (the
// last one) and the server refuses to start with one line, or a page read
// later (an old event's) and the server, which starts, finds it within
// seconds — writes stop, /readyz is 503 — and `aidants check` names it.
func TestDamagedDatabaseIsRefused(t *testing.T) {
	t.Run("found at start or at once", func(t *testing.T) {
		data := t.TempDir()
		s := startDev(t, data)
		for range 3 {
			signInAidant(t, browser(t), s, devidp.SubCamille)
		}
		s.Stop()
		corruptPage(t, filepath.Join(data, "aidants.db"), 0)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		started := make(chan string, 1)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := run(ctx, []string{"serve", "--dev", "--data", data, "--listen", "127.0.0.1:0"}, pw, io.Discard)
			pw.Close()
			done <- err
		}()
		go func() {
			b := make([]byte, 4096)
			n, _ := pr.Read(b)
			if m := readyLine.FindStringSubmatch(string(b[:n])); m != nil {
				started <- m[1]
			}
			io.Copy(io.Discard, pr)
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "is damaged") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("serve on a damaged database: %v", err)
			}
		case u := <-started:
			deadline := time.Now().Add(10 * time.Second)
			for {
				if st, _ := fetch(t, u+"/readyz"); st == http.StatusServiceUnavailable {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the damage was not found within 10 s")
				}
				time.Sleep(50 * time.Millisecond)
			}
			cancel()
			<-done
		}
	})
	t.Run("found by the running server and by check", func(t *testing.T) {
		data := t.TempDir()
		s := startDev(t, data)
		signInAidant(t, browser(t), s, devidp.SubCamille)
		s.Stop()
		// A page nothing reads at start: the archive of format 1.
		path := filepath.Join(data, "aidants.db")
		page := corruptPage(t, path, rootPage(t, path, "audit_v1_events"))
		out, err := (cli{t: t}).run("check", "--dev", "--data", data)
		if err == nil || !strings.Contains(out, "FAIL") || !strings.Contains(out, "damaged") {
			t.Fatalf("check on page %d damaged: %v\n%s", page, err, out)
		}
		s = startDev(t, data)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if st, _ := fetch(t, s.URL+"/readyz"); st == http.StatusServiceUnavailable {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("page %d's damage was not found within 10 s:\n%s", page, s.Log)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if status, _ := trySignIn(t, s); status != http.StatusServiceUnavailable {
			t.Fatalf("a write on a damaged database: %d", status)
		}
		if !strings.Contains(s.Log.String(), "the database is damaged") {
			t.Fatalf("no log line naming the damage:\n%s", s.Log)
		}
	})
}
