package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"aidants/store/storetest"
)

func TestMain(m *testing.M) {
	// The test binary doubles as the aidants command: run by a shell
	// script named aidants (the documentation's recipes), with its
	// arguments as they are.
	if os.Getenv(asCLIEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "aidants: "+oneLine(err))
			os.Exit(1)
		}
		os.Exit(0)
	}
	// Or for tests that need real server processes.
	if args := os.Getenv(childArgsEnv); args != "" {
		var argv []string
		json.Unmarshal([]byte(args), &argv)
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := run(ctx, argv, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "aidants:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	storetest.Main(m)
}

const childArgsEnv = "AIDANTS_TEST_CHILD_ARGS"

const asCLIEnv = "AIDANTS_TEST_AS_CLI"

// aidantsOnPath puts a command named aidants, which is this test binary,
// in a directory of its own and returns that directory, for shell recipes.
func aidantsOnPath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\n" + asCLIEnv + "=1 exec " + shellQuote(exe) + " \"$@\"\n"
	if err := os.WriteFile(dir+"/aidants", []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// startChild runs `aidants ARGS...` in a separate process until the test
// ends, and returns the URL it announces.
func startChild(t *testing.T, args ...string) string {
	t.Helper()
	u, _ := spawn(t, nil, args...)
	return u
}

// spawn runs `aidants ARGS...` in a separate process with env added to
// the test's environment, and returns the URL it announces and the
// process, which the test may kill; it is stopped when the test ends.
func spawn(t *testing.T, env []string, args ...string) (string, *exec.Cmd) {
	t.Helper()
	argv, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), env...), childArgsEnv+"="+string(argv))
	stdout, _ := cmd.StdoutPipe()
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
		}
		close(urlc)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			t.Logf("child %v log:\n%s", args, logs)
		}
	})
	select {
	case u, ok := <-urlc:
		if ok {
			return u, cmd
		}
	case <-time.After(60 * time.Second):
	}
	t.Fatalf("child %v did not start:\n%s", args, logs)
	return "", nil
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer collects the server's log safely across goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is the real service, started by run() as `aidants serve`.
type testServer struct {
	URL  string
	Data string // development data directory (--dev)
	Log  *syncBuffer
	stop func()
}

// Stop shuts the server down now (it is stopped at the end of the test
// otherwise).
func (s *testServer) Stop() { s.stop() }

var readyLine = regexp.MustCompile(`prêt sur (http://\S+)`)

// startDev runs `aidants serve --dev --data DIR --listen 127.0.0.1:0` until
// the test ends. dir may be "" for a fresh directory.
func startDev(t *testing.T, dir string) *testServer {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	return startServe(t, dir, []string{"serve", "--dev", "--data", dir, "--listen", "127.0.0.1:0"})
}

func startServe(t *testing.T, dir string, args []string) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, pw, logs)
		pw.CloseWithError(errors.Join(err, io.EOF))
		done <- err
	}()
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
		}
		close(urlc)
	}()
	var u string
	select {
	case u = <-urlc:
	case <-time.After(60 * time.Second):
	}
	if u == "" {
		cancel()
		t.Fatalf("server did not start: %v\n%s", <-done, logs)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("server stopped with %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("server did not stop")
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return &testServer{URL: u, Data: dir, Log: logs, stop: stop}
}

// browser is an HTTP client with cookies that follows redirects, like a
// browser without JavaScript.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

// get fetches a page and returns its final URL, status and body.
func get(t *testing.T, c *http.Client, u string) (string, int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Request.URL.String(), resp.StatusCode, string(b)
}

// postForm posts a form from a page of the site (same-origin), following
// redirects.
func postForm(t *testing.T, c *http.Client, u string, form url.Values) (string, int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Request.URL.String(), resp.StatusCode, string(b)
}

var hiddenRequest = regexp.MustCompile(`name="request" value="([^"]+)"`)
var formAction = regexp.MustCompile(`<form method="post" action="([^"]+)"`)

// signInAidant goes through the aidants' development provider as sub and
// returns where the browser lands.
func signInAidant(t *testing.T, c *http.Client, s *testServer, sub string) (string, int, string) {
	t.Helper()
	return pickIdentity(t, c, s.URL+"/connexion/aidant", sub)
}

// pickIdentity opens start (which leads to a development provider's page)
// and picks the identity sub there.
func pickIdentity(t *testing.T, c *http.Client, start, sub string) (string, int, string) {
	t.Helper()
	page, status, body := get(t, c, start)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d at %s\n%s", start, status, page, body)
	}
	req := hiddenRequest.FindStringSubmatch(body)
	act := formAction.FindStringSubmatch(body)
	if req == nil || act == nil {
		t.Fatalf("no identity form at %s:\n%s", page, body)
	}
	action, _ := url.Parse(page)
	action, _ = action.Parse(htmlUnescape(act[1]))
	return postForm(t, c, action.String(), url.Values{"request": {req[1]}, "identity": {sub}})
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'").Replace(s)
}
