// Package testtool installs and runs the external programs that tests use
// as real components (litewitness, mailpit): Go commands pinned to a
// version, installed once per machine with "go install" into the user's
// cache directory, and run as child processes on loopback.
//
// When a program cannot be installed (no go on PATH, no network) the test
// is skipped with a loud message, unless AIDANTS_TEST_REQUIRE_ALL=1 (CI),
// which turns the skip into a failure. CI installs the programs beforehand
// (see GoTool.BinDir) so that tests do not depend on the module proxy.
package testtool

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"aidants/store/storetest"
)

// TB is what the helpers need of a test: a testing.TB has it, and so can a
// program such as the benchmark command.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// SkipOrFail skips loudly, or fails when every external tool is required
// (AIDANTS_TEST_REQUIRE_ALL=1, as in CI).
func SkipOrFail(t TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if storetest.RequireAll() {
		t.Fatalf("AIDANTS_TEST_REQUIRE_ALL=1 but %s", msg)
	}
	t.Skipf("SKIPPED (install it to run this test): %s", msg)
}

// InstallTimeout bounds a cold install, which may compile a large program.
const InstallTimeout = 10 * time.Minute

// GoTool is a set of commands of one module version that tests install
// with "go install".
type GoTool struct {
	// Name names the tool in messages ("litewitness v0.6.1").
	Name string
	// Dir is the tool's folder under <user cache dir>/aidants-test, one
	// per version ("torchwood-v0.6.1").
	Dir string
	// Packages are the "go install" arguments, path@version.
	Packages []string
	// Binaries are the names of the commands they install.
	Binaries []string
}

// BinDir is where the tool's commands are kept:
// <user cache dir>/aidants-test/<Dir>/bin.
func (g GoTool) BinDir() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "aidants-test", g.Dir, "bin"), nil
}

type installed struct {
	mu   sync.Mutex
	done bool
	err  error
}

var installs sync.Map // GoTool.Dir → *installed

// Install returns the paths of the tool's commands, in Binaries order,
// installing them into BinDir the first time. Test binaries running at
// once take turns on a lock file, and each install goes to a private
// directory before the commands are renamed into place, which is atomic:
// no test ever runs a half-written binary. A tool that cannot be installed
// skips the test (or fails it in CI).
func (g GoTool) Install(t TB) []string {
	t.Helper()
	v, _ := installs.LoadOrStore(g.Dir, new(installed))
	in := v.(*installed)
	in.mu.Lock()
	defer in.mu.Unlock()
	dir, err := g.BinDir()
	if err != nil {
		SkipOrFail(t, "no user cache directory for %s: %v", g.Name, err)
	}
	paths := make([]string, len(g.Binaries))
	for i, b := range g.Binaries {
		paths[i] = filepath.Join(dir, b)
	}
	if !in.done && !allExecutable(paths) {
		in.err = g.goInstall(t, dir, paths)
	}
	in.done = true
	if in.err != nil {
		SkipOrFail(t, "cannot install %s: %v", g.Name, in.err)
	}
	return paths
}

func (g GoTool) goInstall(t TB, dir string, paths []string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("go is not on PATH: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(filepath.Dir(dir), "install.lock"), InstallTimeout)
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
	ctx, cancel := context.WithTimeout(context.Background(), InstallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, append([]string{"install"}, g.Packages...)...)
	cmd.Dir = tmp // outside any module: pkg@version ignores ours anyway
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install %s: %w\n%s", strings.Join(g.Packages, " "), err, out)
	}
	t.Logf("testtool: installed %s into %s in %v", g.Name, dir, time.Since(start).Round(time.Millisecond))
	for _, name := range g.Binaries {
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func allExecutable(paths []string) bool {
	for _, p := range paths {
		if !isExecutable(p) {
			return false
		}
	}
	return true
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// FreePort returns a TCP port of 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StopTimeout is how long Stop waits after an interrupt before it kills.
const StopTimeout = 5 * time.Second

// Process is a background command whose combined output is kept. On
// Linux the kernel kills it if the test binary dies without running its
// cleanups (a panic, a -timeout).
type Process struct {
	cmd  *exec.Cmd
	out  *SyncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// Start starts name with args in the background.
func Start(name string, args ...string) (*Process, error) {
	return StartCmd(exec.Command(name, args...))
}

// StartCmd starts a prepared command in the background; its output goes
// to the Process.
func StartCmd(cmd *exec.Cmd) (*Process, error) {
	p := &Process{cmd: cmd, out: new(SyncBuffer), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit status, once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Output is what the process wrote so far, standard output and error.
func (p *Process) Output() string { return p.out.String() }

// Stop interrupts the process, kills it if it is still there after
// StopTimeout, and waits for it.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill kills the process at once (SIGKILL) and waits for it.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// SyncBuffer is a bytes.Buffer safe for a process to write while a test
// reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
