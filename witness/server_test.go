package witness

import (
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServerPersistsStatePrivatelyAndAtomically checks the state file after
// a cosignature: it holds the checkpoint, only its owner can read it, and no
// temporary file is left beside it.
func TestServerPersistsStatePrivatelyAndAtomically(t *testing.T) {
	l := newTestLog(t, "example.test/log").grow(t, 7, "entry")
	w := startDevServer(t, DevWitnessName, map[string]string{l.origin: l.vkey})
	w.mustCosign(t, l, 0, 7)

	dir := filepath.Dir(w.statePath)
	fi, err := os.Stat(w.statePath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
	b, err := os.ReadFile(w.statePath)
	if err != nil {
		t.Fatal(err)
	}
	var st serverState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state file: %v\n%s", err, b)
	}
	if got := st.Logs[l.origin]; got.Size != 7 || got.Root != l.root(t, 7) {
		t.Errorf("state holds %+v, want size 7 and the log's root", got)
	}
}

// TestServerIndexShowsNameAndKey checks the page a developer opens to
// configure the witness's key elsewhere.
func TestServerIndexShowsNameAndKey(t *testing.T) {
	l := newTestLog(t, "example.test/log")
	w := startDevServer(t, DevWitnessName, map[string]string{l.origin: l.vkey})
	resp, err := http.Get(w.url())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"dev.aidants.localhost/witness", w.vkey, "example.test/log size 0"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("index page lacks %q:\n%s", want, page)
		}
	}
	if _, err := ParseVerifierKey(w.vkey); err != nil {
		t.Errorf("the server's verifier key does not parse: %v", err)
	}
}

// TestServerRefusesOversizedRequest checks the request bound.
func TestServerRefusesOversizedRequest(t *testing.T) {
	w := startDevServer(t, DevWitnessName, nil)
	resp, err := http.Post(w.url()+"/add-checkpoint", "text/plain", strings.NewReader(strings.Repeat("a", maxRequestSize+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

// TestNewServerRefusesBadConfiguration checks that a mistyped log key or a
// bad name stops the server at start, not at the first request.
func TestNewServerRefusesBadConfiguration(t *testing.T) {
	key, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state.json")
	bad := []ServerOptions{
		{Name: "dev", Key: key, StatePath: state, Logs: map[string]string{"example.test/log": "example.test/log+00000000+AAAA"}},
		{Name: "two words", Key: key, StatePath: state},
		{Name: "dev", StatePath: state},
		{Name: "dev", Key: key},
	}
	for i, opts := range bad {
		if _, err := NewServer(opts); err == nil {
			t.Errorf("options %d: no error", i)
		}
	}
	if err := os.WriteFile(state, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(ServerOptions{Name: "dev", Key: key, StatePath: state}); err == nil {
		t.Error("corrupt state file: no error")
	}
}

// TestLoadOrCreateKey checks that the key is created private, read back
// identical, and refused when others can read it or it is not a key.
func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "witness.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) || len(k1) != ed25519.PrivateKeySize {
		t.Fatal("the key read back differs from the key created")
	}
	matches, _ := filepath.Glob(path + ".tmp*")
	if len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Error("a key readable by others is accepted")
	}
	garbage := filepath.Join(t.TempDir(), "garbage.key")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(garbage); err == nil {
		t.Error("a file that is not a key is accepted")
	}
}

// TestServerAnswersLikeTheProtocol checks the raw answers where the
// protocol is precise: the 409 content type and body.
func TestServerAnswersLikeTheProtocol(t *testing.T) {
	l := newTestLog(t, "example.test/log").grow(t, 9, "entry")
	w := startDevServer(t, DevWitnessName, map[string]string{l.origin: l.vkey})
	w.mustCosign(t, l, 0, 5)
	body, err := addCheckpointBody(0, nil, l.checkpoint(t, 9))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	w.server().ServeHTTP(rec, httptest.NewRequest("POST", "/add-checkpoint", strings.NewReader(string(body))))
	if rec.Code != http.StatusConflict || rec.Header().Get("Content-Type") != "text/x.tlog.size" || rec.Body.String() != "5\n" {
		t.Fatalf("answer %d %q %q, want 409 text/x.tlog.size \"5\\n\"", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
}
