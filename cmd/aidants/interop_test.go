package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/devidp"
	"aidants/store/storetest"
)

// openidClient installs the independent OpenID client (Node's
// openid-client, pinned by testdata/interop/package-lock.json) into a
// folder of its own under the user's cache, once per lock file, and
// returns that folder. Without node or npm the test is skipped loudly,
// and fails in CI.
func openidClient(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			storetest.SkipOrFail(t, "%s is not installed: the openid-client interoperability test needs Node.js", tool)
		}
	}
	src := filepath.Join("testdata", "interop")
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "aidants-test", "openid-client-"+hex.EncodeToString(sum[:6]))
	for _, f := range []string{"package.json", "package-lock.json", "client.mjs"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openid-client", "package.json")); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return dir
}

// TestOpenIDClientInteroperates lets openid-client v6 — an independent,
// certified relying party — do discovery, the code exchange with PKCE and
// private_key_jwt, ID token validation and userinfo against the provider,
// while this test plays the aidant's browser.
func TestOpenIDClientInteroperates(t *testing.T) {
	dir := openidClient(t)
	s := startDev(t, "")

	// The service is registered the operator's way, with its public key.
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := jose.JSONWebKey{Key: priv, KeyID: "interop-1", Algorithm: "ES256", Use: "sig"}
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
	privJSON, _ := key.MarshalJSON()
	tmp := t.TempDir()
	jwksFile, jwkFile := filepath.Join(tmp, "jwks.json"), filepath.Join(tmp, "key.jwk")
	os.WriteFile(jwksFile, pub, 0o600)
	os.WriteFile(jwkFile, privJSON, 0o600)
	redirect := "http://127.0.0.1:9/interop/callback" // never contacted: the test reads the redirect
	out := cli{t, []string{"--dev", "--data", s.Data}}.ok("service", "add", "--name", "Caisse interop",
		"--redirect-uri", redirect, "--demarches", "argent,social", "--jwks", jwksFile)
	m := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(out)
	if m == nil || strings.Contains(out, "client_secret") {
		t.Fatalf("service add printed:\n%s", out)
	}
	clientID := m[1]

	// An aidant with a mandate for Joséphine.
	c := browser(t)
	signInAidant(t, c, s, devidp.SubCamille)
	mandateID := createOnSite(t, c, s, devidp.SubJosephine, onSiteForm("argent"))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	node := exec.CommandContext(ctx, "node", "client.mjs", s.URL, clientID, jwkFile, redirect)
	node.Dir = dir
	stdin, _ := node.StdinPipe()
	stdout, _ := node.StdoutPipe()
	var stderr syncBuffer
	node.Stderr = &stderr
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer node.Process.Kill()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	next := func(v any) {
		t.Helper()
		if !lines.Scan() {
			node.Wait()
			t.Fatalf("openid-client stopped: %v\n%s", lines.Err(), stderr.String())
		}
		if err := json.Unmarshal(lines.Bytes(), v); err != nil {
			t.Fatalf("openid-client said %q: %v", lines.Text(), err)
		}
	}
	var start struct{ Authorize string }
	next(&start)

	// The browser part: follow the provider until it sends us back to the
	// service's redirect URI, which we hand to openid-client.
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	_, status, body := get(t, c, start.Authorize)
	if status != http.StatusOK || !strings.Contains(body, "Lefèvre") {
		t.Fatalf("chooser: %d\n%s", status, body)
	}
	form := url.Values{"demande": {demandeField.FindStringSubmatch(body)[1]}, "mandat": {mandatField.FindStringSubmatch(body)[1]}, "demarche": {"argent"}}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/agir", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || !strings.HasPrefix(back, redirect+"?") {
		t.Fatalf("after the choice: %d, Location %q", resp.StatusCode, back)
	}
	if _, err := stdin.Write([]byte(back + "\n")); err != nil {
		t.Fatal(err)
	}

	var result struct {
		Claims    map[string]any
		Userinfo  map[string]any
		TokenType string `json:"token_type"`
		Refresh   *string
	}
	next(&result)
	if err := node.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("openid-client: %v\n%s", err, stderr.String())
	}
	cl, ui := result.Claims, result.Userinfo
	if cl["iss"] != s.URL || cl["aud"] != clientID || cl["given_name"] != "Joséphine Marie" || cl["family_name"] != "Lefèvre" ||
		cl["birthdate"] != "1948-03-12" || cl["acr"] != "eidas2" {
		t.Errorf("ID token claims: %v", cl)
	}
	if ui["sub"] != cl["sub"] || ui["family_name"] != "Lefèvre" {
		t.Errorf("userinfo %v does not match the ID token %v", ui, cl)
	}
	act, _ := cl["act"].(map[string]any)
	if act == nil || act["given_name"] != "Camille" || act["sub"] == nil || act["sub"] == cl["sub"] {
		t.Errorf("act: %v", cl["act"])
	}
	details, _ := cl["authorization_details"].([]any)
	if len(details) != 1 || !strings.Contains(mustJSON(details[0]), mandateID) {
		t.Errorf("authorization_details: %v (mandate %s)", cl["authorization_details"], mandateID)
	}
	if !strings.EqualFold(result.TokenType, "bearer") || result.Refresh != nil {
		t.Errorf("token type %q, refresh token %v", result.TokenType, result.Refresh)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
