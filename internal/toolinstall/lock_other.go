//go:build !linux

package toolinstall

import "time"

// lockFile does not lock outside Linux: concurrent installs then compile
// twice, and the rename into place keeps them safe.
func lockFile(path string, timeout time.Duration) (unlock func(), err error) {
	return func() {}, nil
}
