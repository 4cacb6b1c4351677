// Package testutil holds small helpers shared by khproxy's tests.
package testutil

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use, for capturing logs
// and output written by servers under test. The zero value is empty and
// ready to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitClosed waits until a TCP connection to addr is refused: the
// listener there has been closed, as a graceful shutdown does first.
func WaitClosed(t testing.TB, addr string) {
	t.Helper()
	WaitFor(t, "the listener at "+addr+" to close", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}
