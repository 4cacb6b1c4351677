//go:build unix

package audit

import (
	"errors"
	"os"
	"syscall"
)

// lock takes an exclusive advisory lock on f, held until f is closed, so
// that two khproxy processes never write one file (each replica writes a
// file of its own).
func lock(f *os.File) error {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return errors.New("another khproxy is writing it: give each replica a file of its own")
		}
		return err
	}
	return nil
}
