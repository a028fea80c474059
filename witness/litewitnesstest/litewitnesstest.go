// Package litewitnesstest gives tests a real litewitness, the tlog-witness
// implementation of filippo.io/torchwood (Version), so that the project's
// witness client and verifier are tested against the witness that public
// logs use, not against our own reading of the protocol.
//
// Start installs litewitness and witnessctl with "go install" (once per
// machine: the binaries are kept in the user's cache directory), starts a
// dedicated ssh-agent holding a fresh Ed25519 key, registers the logs with
// witnessctl and runs litewitness on a loopback port. Everything is stopped
// and removed at the end of the test.
//
// When go, ssh-agent, ssh-keygen or ssh-add is missing, or the install
// fails (no network), the test is skipped with a loud message, unless
// AIDANTS_TEST_REQUIRE_ALL=1 (CI), which turns the skip into a failure. CI
// should install the binaries beforehand (see BinDir) so that tests do not
// depend on the module proxy.
//
// This package must not import the witness package it helps to test: the
// witness package's own tests import it.
package litewitnesstest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"aidants/internal/testtool"
)

// Version is the torchwood release whose litewitness and witnessctl the
// tests run.
const Version = "v0.6.1"

// Time bounds: local processes that answer in milliseconds. (A cold
// install compiles a pure-Go SQLite: testtool.InstallTimeout.)
const (
	commandTimeout = 30 * time.Second
	startTimeout   = 20 * time.Second
)

var torchwood = testtool.GoTool{
	Name: "litewitness and witnessctl " + Version,
	Dir:  "torchwood-" + Version,
	Packages: []string{
		"filippo.io/torchwood/cmd/litewitness@" + Version,
		"filippo.io/torchwood/cmd/witnessctl@" + Version,
	},
	Binaries: []string{"litewitness", "witnessctl"},
}

// TB is what the helpers need of a test: a testing.TB has it, and so can a
// program such as the benchmark command.
type TB = testtool.TB

var skipOrFail = testtool.SkipOrFail

// Witness is a running litewitness.
type Witness struct {
	Name   string // the witness name, as in its cosignature lines
	URL    string // http://127.0.0.1:<port>, the tlog-witness prefix
	VKey   string // the cosignature/v1 verifier key litewitness printed
	DBPath string // its SQLite database

	litewitness, witnessctl string
	agentSock               string
	fingerprint             string // SHA256:… of the witness key

	mu   sync.Mutex
	proc *testtool.Process
}

// Start runs a litewitness named name that knows the given logs (origin →
// note verifier key of the log), until the end of the test.
func Start(t TB, name string, logs map[string]string) *Witness {
	t.Helper()
	lw, ctl := install(t)
	for _, tool := range []string{"ssh-agent", "ssh-keygen", "ssh-add"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "%s is not on PATH (package openssh-client)", tool)
		}
	}
	dir := t.TempDir()
	w := &Witness{
		Name:        name,
		DBPath:      filepath.Join(dir, "litewitness.db"),
		litewitness: lw,
		witnessctl:  ctl,
	}
	w.agentSock = startAgent(t)
	keyFile := filepath.Join(dir, "witness_key")
	run(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "litewitnesstest", "-f", keyFile)
	run(t, []string{"SSH_AUTH_SOCK=" + w.agentSock}, "ssh-add", "-q", keyFile)
	fp, err := fingerprint(keyFile + ".pub")
	if err != nil {
		t.Fatalf("litewitnesstest: %v", err)
	}
	w.fingerprint = fp

	origins := make([]string, 0, len(logs))
	for o := range logs {
		origins = append(origins, o)
	}
	slices.Sort(origins)
	for _, o := range origins {
		w.AddLog(t, o, logs[o])
	}

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("litewitness output:\n%s", w.output())
		}
		w.Stop()
	})
	w.start(t, 0)
	return w
}

// AddLog registers a log with witnessctl (it may be called while
// litewitness runs).
func (w *Witness) AddLog(t TB, origin, vkey string) {
	t.Helper()
	run(t, nil, w.witnessctl, "add-log", "-db", w.DBPath, "-origin", origin)
	run(t, nil, w.witnessctl, "add-key", "-db", w.DBPath, "-origin", origin, "-key", vkey)
}

// TreeSize returns the size of the checkpoint litewitness holds for origin,
// read from its database with witnessctl list-logs.
func (w *Witness) TreeSize(t TB, origin string) int64 {
	t.Helper()
	out := run(t, nil, w.witnessctl, "list-logs", "-db", w.DBPath)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l struct {
			Origin string `json:"origin"`
			Size   int64  `json:"size"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("litewitnesstest: witnessctl list-logs: %v in %q", err, sc.Text())
		}
		if l.Origin == origin {
			return l.Size
		}
	}
	t.Fatalf("litewitnesstest: witnessctl list-logs does not list %q:\n%s", origin, out)
	return 0
}

// Stop stops litewitness (interrupt, then kill after a few seconds). Its
// database and ssh-agent stay, for Restart.
func (w *Witness) Stop() {
	w.mu.Lock()
	p := w.proc
	w.proc = nil
	w.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

// Restart stops litewitness and starts it again on the same database and
// key, on the same port if it is still free (URL is updated otherwise).
func (w *Witness) Restart(t TB) {
	t.Helper()
	w.Stop()
	port := 0
	if u := strings.TrimPrefix(w.URL, "http://127.0.0.1:"); u != w.URL {
		port, _ = strconv.Atoi(u)
	}
	vkey := w.VKey
	w.start(t, port)
	if w.VKey != vkey {
		t.Fatalf("litewitnesstest: verifier key changed across restart: %s, then %s", vkey, w.VKey)
	}
}

// start runs litewitness on port (a free one if 0, or if port is taken),
// and waits until it answers.
func (w *Witness) start(t TB, port int) {
	t.Helper()
	var errs []error
	for attempt := 0; attempt < 3; attempt++ {
		if port == 0 || attempt > 0 {
			var err error
			if port, err = testtool.FreePort(); err != nil {
				t.Fatalf("litewitnesstest: %v", err)
			}
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := testtool.Start(w.litewitness,
			"-db", w.DBPath, "-name", w.Name, "-key", w.fingerprint,
			"-ssh-agent", w.agentSock, "-listen", addr)
		if err != nil {
			t.Fatalf("litewitnesstest: start litewitness: %v", err)
		}
		vkey, err := waitReady(p, "http://"+addr+"/")
		if err != nil {
			p.Stop()
			errs = append(errs, fmt.Errorf("on %s: %w\n%s", addr, err, p.Output()))
			continue
		}
		w.mu.Lock()
		w.proc, w.URL, w.VKey = p, "http://"+addr, vkey
		w.mu.Unlock()
		return
	}
	t.Fatalf("litewitnesstest: litewitness did not start: %v", errors.Join(errs...))
}

func (w *Witness) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.proc == nil {
		return "(stopped)"
	}
	return w.proc.Output()
}

// waitReady waits until litewitness has printed its verifier key and answers
// GET / with 200, and returns the key.
func waitReady(p *testtool.Process, index string) (string, error) {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.Done():
			return "", fmt.Errorf("litewitness exited: %v", p.Err())
		case <-time.After(50 * time.Millisecond):
		}
		vkey := verifierKey(p.Output())
		if vkey == "" {
			continue
		}
		resp, err := hc.Get(index)
		if err != nil {
			continue
		}
		page, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if !strings.Contains(string(page), vkey) {
				return "", fmt.Errorf("index page does not show the verifier key %s it logged", vkey)
			}
			return vkey, nil
		}
	}
	return "", fmt.Errorf("no answer within %v", startTimeout)
}

// verifierKey finds the key in litewitness's start-up line
// `level=INFO msg="verifier key" vkey=<name>+<hash>+<key>`.
func verifierKey(log string) string {
	for line := range strings.Lines(log) {
		if !strings.Contains(line, `msg="verifier key"`) {
			continue
		}
		_, v, ok := strings.Cut(strings.TrimSpace(line), " vkey=")
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, " ")
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		return v
	}
	return ""
}

// BinDir is where the tests keep litewitness and witnessctl:
// <user cache dir>/aidants-test/torchwood-<Version>/bin. CI pre-installs
// them there with
//
//	GOBIN="${XDG_CACHE_HOME:-$HOME/.cache}/aidants-test/torchwood-v0.6.1/bin" \
//		go install filippo.io/torchwood/cmd/litewitness@v0.6.1 filippo.io/torchwood/cmd/witnessctl@v0.6.1
func BinDir() (string, error) { return torchwood.BinDir() }

// install returns the paths of litewitness and witnessctl, installing them
// into BinDir the first time (see testtool.GoTool.Install).
func install(t TB) (litewitness, witnessctl string) {
	t.Helper()
	paths := torchwood.Install(t)
	return paths[0], paths[1]
}

// startAgent starts a dedicated ssh-agent and returns its socket. The
// socket lives in a short directory under /tmp: a Unix socket path must
// stay under 108 bytes, which t.TempDir() paths often exceed.
func startAgent(t TB) string {
	t.Helper()
	sockDir, err := os.MkdirTemp("/tmp", "lw")
	if err != nil {
		t.Fatalf("litewitnesstest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "agent.sock")
	p, err := testtool.Start("ssh-agent", "-D", "-a", sock)
	if err != nil {
		skipOrFail(t, "cannot start ssh-agent: %v", err)
	}
	t.Cleanup(p.Stop)
	deadline := time.Now().Add(startTimeout)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		select {
		case <-p.Done():
			t.Fatalf("litewitnesstest: ssh-agent exited: %v\n%s", p.Err(), p.Output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("litewitnesstest: ssh-agent socket %s did not appear within %v", sock, startTimeout)
		}
	}
}

// fingerprint returns the SHA256:… fingerprint of an OpenSSH public key
// file, as ssh-keygen -l prints it and litewitness -key expects it.
func fingerprint(pubFile string) (string, error) {
	b, err := os.ReadFile(pubFile)
	if err != nil {
		return "", err
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 || fields[0] != "ssh-ed25519" {
		return "", fmt.Errorf("%s is not an ssh-ed25519 public key", pubFile)
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return "", fmt.Errorf("%s: %w", pubFile, err)
	}
	sum := sha256.Sum256(blob)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]), nil
}

// run runs a command to completion within commandTimeout and returns its
// standard output; a failure fails the test with the command's output.
func run(t TB, env []string, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("litewitnesstest: %s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}
