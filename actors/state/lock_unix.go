//go:build unix

package state

import (
	"os"
	"syscall"
)

// lockExclusive takes a non-blocking exclusive flock on f; the lock goes
// away with the process, so a killed process never leaves it behind.
func lockExclusive(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
