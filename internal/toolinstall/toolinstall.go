// Package toolinstall installs, once per machine, the Go programs that
// tests run against — the real litewitness, the zitadel example OpenID
// provider — so that the project's code is tested against independent
// implementations, not against its own reading of a protocol.
//
// A Tool is installed with "go install" into the user's cache directory
// (Dir), where CI may put it beforehand (.ci/run). Test binaries of several
// packages run by one "go test ./..." take turns on a lock file, and each
// install goes to a private directory before the binaries are renamed into
// place, which is atomic: no test ever runs a half-written binary. Within a
// test binary, a failed install is not retried.
package toolinstall

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Tool is programs of one module version that tests run.
type Tool struct {
	// Name is the directory of this version under the cache, e.g.
	// "torchwood-v0.6.1".
	Name string
	// Packages are the "path@version" arguments of go install.
	Packages []string
	// Binaries are the names go install gives the programs, in the order
	// Install returns their paths.
	Binaries []string
}

// Dir is where the tool's binaries are kept:
// <user cache>/aidants-test/<Name>/bin.
func (t Tool) Dir() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache directory for %s: %w", t.Name, err)
	}
	return filepath.Join(cache, "aidants-test", t.Name, "bin"), nil
}

var (
	mu      sync.Mutex
	results = map[string]error{} // by Name, once tried in this process
)

// Install returns the paths of the tool's binaries, installing them first
// when they are not in Dir. logf reports an install and its duration.
func (t Tool) Install(logf func(format string, args ...any), timeout time.Duration) ([]string, error) {
	mu.Lock()
	defer mu.Unlock()
	dir, err := t.Dir()
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(t.Binaries))
	for i, b := range t.Binaries {
		paths[i] = filepath.Join(dir, b)
	}
	if err, tried := results[t.Name]; tried {
		return paths, err
	}
	if !allExecutable(paths) {
		err = t.install(dir, paths, logf, timeout)
	}
	results[t.Name] = err
	return paths, err
}

func (t Tool) install(dir string, paths []string, logf func(string, ...any), timeout time.Duration) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("go is not on PATH: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(filepath.Dir(dir), "install.lock"), timeout)
	if err != nil {
		return fmt.Errorf("lock the install: %w", err)
	}
	defer unlock()
	if allExecutable(paths) {
		return nil // another test binary installed them while we waited
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, append([]string{"install"}, t.Packages...)...)
	cmd.Dir = tmp // outside any module: pkg@version ignores ours anyway
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install %s: %w\n%s", strings.Join(t.Packages, " "), err, out)
	}
	for i, b := range t.Binaries {
		if err := os.Rename(filepath.Join(tmp, b), paths[i]); err != nil {
			return err
		}
	}
	logf("toolinstall: installed %s into %s in %v", strings.Join(t.Binaries, ", "), dir, time.Since(start).Round(time.Millisecond))
	return nil
}

func allExecutable(paths []string) bool {
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}
