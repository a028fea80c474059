package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"aidants/devidp"
)

// openidClient installs the independent OpenID client (Node's
// openid-client, pinned by testdata/interop/package-lock.json) into a
// folder of its own under the user's cache, once per lock file, and
// returns that folder. Without node or npm the test is skipped loudly,
// and fails in CI.
func openidClient(t *testing.T) string {
	t.Helper()
	return npmCI(t, "interop", filepath.Join("openid-client", "package.json"), "the openid-client interoperability test needs Node.js")
}

// interop is a development server where the aidant Camille is signed in
// with a mandate of Joséphine for argent, and where services register the
// operator's way.
type interop struct {
	t         *testing.T
	s         *testServer
	c         *http.Client
	mandateID string
	signedIn  time.Time
}

func newInterop(t *testing.T) *interop {
	t.Helper()
	s := startDev(t, "")
	c := browser(t)
	in := &interop{t: t, s: s, c: c, signedIn: time.Now().Truncate(time.Second)}
	signInAidant(t, c, s, devidp.SubCamille)
	in.mandateID = createOnSite(t, c, s, devidp.SubJosephine, onSiteForm("argent"))
	return in
}

// service is a registered service and what it authenticates with.
type service struct {
	clientID, secret, jwkFile, redirect string
}

// register registers a service with `aidants service add`: auth is the
// client authentication, extra more flags.
func (in *interop) register(name, auth string, extra ...string) *service {
	t := in.t
	t.Helper()
	svc := &service{redirect: "http://127.0.0.1:9/" + name + "/callback"} // never contacted: the test reads the redirect
	args := []string{"service", "add", "--name", name, "--redirect-uri", svc.redirect, "--demarches", "argent,social", "--auth", auth}
	if auth == "private_key_jwt" {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key := jose.JSONWebKey{Key: priv, KeyID: name + "-1", Algorithm: "ES256", Use: "sig"}
		pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
		privJSON, _ := key.MarshalJSON()
		tmp := t.TempDir()
		jwks := filepath.Join(tmp, "jwks.json")
		svc.jwkFile = filepath.Join(tmp, "key.jwk")
		os.WriteFile(jwks, pub, 0o600)
		os.WriteFile(svc.jwkFile, privJSON, 0o600)
		args = append(args, "--jwks", jwks)
	}
	out := cli{t, []string{"--dev", "--data", in.s.Data}}.ok(append(args, extra...)...)
	m := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("service add printed:\n%s", out)
	}
	svc.clientID = m[1]
	if m := regexp.MustCompile(`client_secret: (\S+)`).FindStringSubmatch(out); m != nil {
		svc.secret = m[1]
	}
	if (svc.secret == "") != (auth == "private_key_jwt") {
		t.Fatalf("service add (%s) printed:\n%s", auth, out)
	}
	return svc
}

// browse plays the aidant's browser from start until the provider sends
// it to redirect, and returns that URL and whether, on the way, the
// aidant authenticated again at the aidants' provider (Camille there,
// Joséphine's mandate for argent on the chooser).
func (in *interop) browse(start, redirect string) (back string, reauthenticated bool) {
	t := in.t
	t.Helper()
	c := *in.c
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	next, form := start, url.Values(nil)
	for range 20 {
		method := http.MethodGet
		var body io.Reader
		if form != nil {
			method, body = http.MethodPost, strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, next, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(b)
		form = nil
		switch {
		case resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusFound:
			loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(loc.String(), redirect) {
				return loc.String(), reauthenticated
			}
			if strings.Contains(loc.Path, "/dev/aidants/authorize") {
				reauthenticated = true
			}
			next = loc.String()
		case resp.StatusCode == http.StatusOK && hiddenRequest.MatchString(page):
			action, _ := resp.Request.URL.Parse(htmlUnescape(formAction.FindStringSubmatch(page)[1]))
			next, form = action.String(), url.Values{"request": {hiddenRequest.FindStringSubmatch(page)[1]}, "identity": {devidp.SubCamille}}
		case resp.StatusCode == http.StatusOK && demandeField.MatchString(page):
			if !strings.Contains(page, "Lefèvre") {
				t.Fatalf("the chooser does not offer Joséphine:\n%s", page)
			}
			next, form = in.s.URL+"/agir", url.Values{"demande": {demandeField.FindStringSubmatch(page)[1]},
				"mandat": {mandatField.FindStringSubmatch(page)[1]}, "demarche": {"argent"}}
		default:
			t.Fatalf("%s %s: %d\n%s", method, next, resp.StatusCode, page)
		}
	}
	t.Fatalf("no way back to %s from %s", redirect, start)
	return "", false
}

// nodeResult is what client.mjs printed at the end.
type nodeResult struct {
	Claims       map[string]any
	Userinfo     map[string]any
	TokenType    string `json:"token_type"`
	Refresh      *string
	UserinfoType string `json:"userinfo_type"`
	Error        *string
	Message      string
}

// openidClientFlow runs openid-client for svc with the options of opts
// (client.mjs's configuration), plays the browser, and returns what the
// client read and whether the aidant authenticated again on the way.
func (in *interop) openidClientFlow(dir string, svc *service, auth string, opts map[string]any) (nodeResult, bool) {
	t := in.t
	t.Helper()
	cfg := map[string]any{"issuer": in.s.URL, "client_id": svc.clientID, "redirect_uri": svc.redirect, "auth": auth,
		"jwk_file": svc.jwkFile, "secret": svc.secret}
	for k, v := range opts {
		cfg[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	node := exec.CommandContext(ctx, "node", "client.mjs", mustJSON(cfg))
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
	back, reauthenticated := in.browse(start.Authorize, svc.redirect)
	if _, err := stdin.Write([]byte(back + "\n")); err != nil {
		t.Fatal(err)
	}
	var result nodeResult
	next(&result)
	if err := node.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("openid-client: %v\n%s", err, stderr.String())
	}
	return result, reauthenticated
}

// checkFlow checks what openid-client read at the end of a flow: the
// person, who acts, under which mandate, and userinfo's same sub.
func (in *interop) checkFlow(r nodeResult, svc *service, wantUserinfoType string) {
	t := in.t
	t.Helper()
	if r.Error != nil || r.Claims == nil {
		t.Fatalf("openid-client failed: %v %s", r.Error, r.Message)
	}
	cl, ui := r.Claims, r.Userinfo
	if cl["iss"] != in.s.URL || cl["aud"] != svc.clientID || cl["given_name"] != "Joséphine Marie" || cl["family_name"] != "Lefèvre" ||
		cl["birthdate"] != "1948-03-12" || cl["acr"] != "eidas2" {
		t.Errorf("ID token claims: %v", cl)
	}
	if ui["sub"] != cl["sub"] || ui["family_name"] != "Lefèvre" || ui["birthplace"] != "44109" {
		t.Errorf("userinfo %v does not match the ID token %v", ui, cl)
	}
	act, _ := cl["act"].(map[string]any)
	if act == nil || act["given_name"] != "Camille" || act["sub"] == nil || act["sub"] == cl["sub"] {
		t.Errorf("act: %v", cl["act"])
	}
	details, _ := cl["authorization_details"].([]any)
	if len(details) != 1 || !strings.Contains(mustJSON(details[0]), in.mandateID) {
		t.Errorf("authorization_details: %v (mandate %s)", cl["authorization_details"], in.mandateID)
	}
	if !strings.EqualFold(r.TokenType, "bearer") || r.Refresh != nil {
		t.Errorf("token type %q, refresh token %v", r.TokenType, r.Refresh)
	}
	if !strings.HasPrefix(r.UserinfoType, wantUserinfoType) {
		t.Errorf("userinfo answered %s, want %s", r.UserinfoType, wantUserinfoType)
	}
}

// TestOpenIDClientInteroperates lets openid-client v6 — an independent,
// certified relying party — do discovery, the code exchange with PKCE and
// each client authentication, ID token validation and userinfo against
// the provider, while this test plays the aidant's browser: with
// client_secret_basic (form-encoded credentials), client_secret_post and
// private_key_jwt; with max_age=1 after a wait and with prompt=login, the
// aidant authenticating again first; with a signed userinfo, whose
// signature openid-client checks; and with a request object, which gets
// request_not_supported back at the service, with its state and iss.
func TestOpenIDClientInteroperates(t *testing.T) {
	dir := openidClient(t)
	in := newInterop(t)
	basic := in.register("interop-basic", "client_secret_basic")
	post := in.register("interop-post", "client_secret_post")
	jwt := in.register("interop-jwt", "private_key_jwt")
	signedES := in.register("interop-signed-es", "client_secret_basic", "--userinfo-signed")
	signedRS := in.register("interop-signed-rs", "private_key_jwt", "--userinfo-signed", "--id-token-alg", "RS256")

	for _, c := range []struct {
		name string
		svc  *service
		auth string
	}{{"client_secret_basic", basic, "client_secret_basic"}, {"client_secret_post", post, "client_secret_post"}, {"private_key_jwt", jwt, "private_key_jwt"}} {
		t.Run(c.name, func(t *testing.T) {
			in.t = t
			r, again := in.openidClientFlow(dir, c.svc, c.auth, nil)
			in.checkFlow(r, c.svc, "application/json")
			if again {
				t.Error("the aidant was asked to authenticate again without max_age or prompt=login")
			}
		})
	}
	t.Run("max_age=1 after a wait", func(t *testing.T) {
		in.t = t
		// The sign-in is now more than a second old.
		time.Sleep(time.Until(in.signedIn.Add(2500 * time.Millisecond)))
		start := time.Now().Truncate(time.Second)
		r, again := in.openidClientFlow(dir, basic, "client_secret_basic", map[string]any{"max_age": 1})
		in.checkFlow(r, basic, "application/json")
		if at, _ := r.Claims["auth_time"].(float64); !again || int64(at) < start.Unix() {
			t.Errorf("authenticated again: %v; auth_time %v, want at or after %d (the flow's start)", again, r.Claims["auth_time"], start.Unix())
		}
	})
	t.Run("prompt=login", func(t *testing.T) {
		in.t = t
		start := time.Now().Truncate(time.Second)
		r, again := in.openidClientFlow(dir, post, "client_secret_post", map[string]any{"prompt": "login"})
		in.checkFlow(r, post, "application/json")
		if at, _ := r.Claims["auth_time"].(float64); !again || int64(at) < start.Unix() {
			t.Errorf("authenticated again: %v; auth_time %v, want at or after %d", again, r.Claims["auth_time"], start.Unix())
		}
	})
	t.Run("signed userinfo ES256", func(t *testing.T) {
		in.t = t
		r, _ := in.openidClientFlow(dir, signedES, "client_secret_basic", map[string]any{"userinfo_alg": "ES256"})
		in.checkFlow(r, signedES, "application/jwt")
		if r.Userinfo["iss"] != in.s.URL || r.Userinfo["aud"] != signedES.clientID {
			t.Errorf("signed userinfo iss %v, aud %v", r.Userinfo["iss"], r.Userinfo["aud"])
		}
	})
	t.Run("signed userinfo RS256", func(t *testing.T) {
		in.t = t
		r, _ := in.openidClientFlow(dir, signedRS, "private_key_jwt", map[string]any{"userinfo_alg": "RS256", "id_token_alg": "RS256"})
		in.checkFlow(r, signedRS, "application/jwt")
	})
	t.Run("request object", func(t *testing.T) {
		in.t = t
		db := openDB(t, in.s)
		before := count(t, db, `SELECT COUNT(*) FROM audit_events`)
		r, _ := in.openidClientFlow(dir, jwt, "private_key_jwt", map[string]any{"jar": true})
		if r.Error == nil || *r.Error != "request_not_supported" {
			t.Errorf("a request object: openid-client read %v (%s), want request_not_supported", r.Error, r.Message)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_events`); n != before {
			t.Errorf("the refused request journaled %d events", n-before)
		}
	})
}

// TestGoOAuth2ClientInteroperates completes flows with Go's
// golang.org/x/oauth2, credentials in the Authorization header and in the
// body, go-oidc verifying the ID token and reading userinfo.
func TestGoOAuth2ClientInteroperates(t *testing.T) {
	in := newInterop(t)
	ctx := t.Context()
	op, err := oidc.NewProvider(ctx, in.s.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		auth  string
		style oauth2.AuthStyle
	}{{"client_secret_basic", oauth2.AuthStyleInHeader}, {"client_secret_post", oauth2.AuthStyleInParams}} {
		t.Run(c.auth, func(t *testing.T) {
			in.t = t
			svc := in.register("go-"+strings.ReplaceAll(c.auth, "_", "-"), c.auth)
			conf := oauth2.Config{ClientID: svc.clientID, ClientSecret: svc.secret, RedirectURL: svc.redirect, Endpoint: op.Endpoint(),
				Scopes: []string{oidc.ScopeOpenID, "identite_pivot"}}
			conf.Endpoint.AuthStyle = c.style
			state, nonce, verifier := oauth2.GenerateVerifier(), oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
			back, _ := in.browse(conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), svc.redirect)
			u, _ := url.Parse(back)
			if q := u.Query(); q.Get("state") != state || q.Get("iss") != in.s.URL || q.Get("code") == "" {
				t.Fatalf("the service got %s", back)
			}
			tok, err := conf.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := op.Verifier(&oidc.Config{ClientID: svc.clientID, SupportedSigningAlgs: []string{oidc.ES256}}).Verify(ctx, raw)
			if err != nil || idt.Nonce != nonce {
				t.Fatalf("go-oidc: %v", err)
			}
			var cl struct {
				Family string `json:"family_name"`
				ACR    string `json:"acr"`
				Act    struct {
					Given string `json:"given_name"`
				} `json:"act"`
			}
			if err := idt.Claims(&cl); err != nil || cl.Family != "Lefèvre" || cl.ACR != "eidas2" || cl.Act.Given != "Camille" {
				t.Errorf("ID token claims %+v, %v", cl, err)
			}
			ui, err := op.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil || ui.Subject != idt.Subject {
				t.Errorf("userinfo %v, %v", ui, err)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
