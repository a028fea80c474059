package litewitnesstest

import "syscall"

// sysProcAttr makes the kernel kill litewitness and ssh-agent if the test
// binary dies without running its cleanups (a panic, a -timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
