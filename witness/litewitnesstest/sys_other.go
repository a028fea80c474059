//go:build !linux

package litewitnesstest

import "syscall"

// sysProcAttr has no way to tie the processes' lives to the test binary
// outside Linux: t.Cleanup stops them.
func sysProcAttr() *syscall.SysProcAttr { return nil }
