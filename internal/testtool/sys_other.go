//go:build !linux

package testtool

import (
	"syscall"
	"time"
)

// sysProcAttr has no way to tie the processes' lives to the test binary
// outside Linux: t.Cleanup stops them.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// lockFile does not lock outside Linux: concurrent installs then compile
// twice, and the rename into place keeps them safe.
func lockFile(path string, timeout time.Duration) (unlock func(), err error) {
	return func() {}, nil
}
