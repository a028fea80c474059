package main

import (
	"bufio"
	"context"
	"go/format"
	"html"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/modfile"

	"aidants/store/storetest"
)

// exampleClient extracts the example client of docs/SERVICES.md into a
// module of its own that requires what this module requires (so it builds
// from the module cache, with no network), builds it, and returns the
// binary.
func exampleClient(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		storetest.SkipOrFail(t, "the go command is not on PATH: the example client of docs/SERVICES.md cannot be built")
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "SERVICES.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- example-client: main.go -->\n```go\n")
	src, _, ok2 := strings.Cut(rest, "\n```\n")
	if !ok || !ok2 {
		t.Fatal("docs/SERVICES.md has no example client block")
	}
	if formatted, err := format.Source([]byte(src + "\n")); err != nil || string(formatted) != src+"\n" {
		t.Errorf("the example client of docs/SERVICES.md is not gofmt'ed: %v", err)
	}
	gomod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	main, err := modfile.Parse("go.mod", gomod, nil)
	if err != nil {
		t.Fatal(err)
	}
	mod := &modfile.File{}
	mod.AddModuleStmt("exemple")
	mod.AddGoStmt(main.Go.Version)
	seen := map[string]bool{}
	for _, r := range main.Require {
		if !seen[r.Mod.Path] {
			seen[r.Mod.Path] = true
			mod.AddNewRequire(r.Mod.Path, r.Mod.Version, false)
		}
	}
	out, err := mod.Format()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join("..", "..", "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"go.mod": out, "go.sum": sum, "main.go": []byte(src + "\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(dir, "exemple")
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOSUMDB=off", "GOTOOLCHAIN=local")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the example client of docs/SERVICES.md does not build: %v\n%s", err, b)
	}
	return bin
}

// TestServicesGuideExampleClientWorks runs the complete example client of
// docs/SERVICES.md, as written there, against a development instance: the
// aidant acts for Joséphine through it, it shows who acted under which
// mandate, and logs out back to itself.
func TestServicesGuideExampleClientWorks(t *testing.T) {
	bin := exampleClient(t)
	in := newInterop(t)
	listen := freeAddr(t)
	base := "http://" + listen
	out := cli{t, []string{"--dev", "--data", in.s.Data}}.ok("service", "add", "--name", "Exemple", "--redirect-uri", base+"/callback",
		"--post-logout-uri", base+"/", "--demarches", "argent", "--auth", "client_secret_basic")
	svc := &service{redirect: base + "/callback"}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "client_id: "); ok {
			svc.clientID = v
		}
		if v, ok := strings.CutPrefix(line, "client_secret: "); ok {
			svc.secret = v
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "AIDANTS_ISSUER="+in.s.URL, "CLIENT_ID="+svc.clientID, "CLIENT_SECRET="+svc.secret, "LISTEN="+listen)
	stdout, _ := cmd.StdoutPipe()
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("example client log:\n%s", logs.String())
		}
	}()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening on ") {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("the example client stopped:\n%s", logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the example client did not start")
	}

	back, _ := in.browse(base+"/login", svc.redirect)
	_, status, body := get(t, in.c, back)
	text := html.UnescapeString(body)
	if status != http.StatusOK {
		t.Fatalf("the example client's callback: %d\n%s", status, text)
	}
	for _, want := range []string{"Joséphine Marie Lefèvre", "1948-03-12", "Démarche faite par Camille Martin", "SIRET " + demoSIRET,
		"sous le mandat n° " + in.mandateID, "niveau eidas2"} {
		if !strings.Contains(strings.Join(strings.Fields(text), " "), want) {
			t.Errorf("the example client's page lacks %q:\n%s", want, text)
		}
	}
	page, status, body := get(t, in.c, base+"/logout")
	if status != http.StatusOK || !strings.HasPrefix(page, base+"/?state=") || !strings.Contains(body, "Agir pour une personne") {
		t.Errorf("logout ends at %s (%d)\n%s", page, status, body)
	}
	if strings.Contains(logs.String(), "Lefèvre") || strings.Contains(logs.String(), svc.secret) {
		t.Errorf("the example client logs the person's name or its secret:\n%s", logs.String())
	}
}
