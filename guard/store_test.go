package guard_test

import (
	"testing"

	"khproxy/guard"
	"khproxy/guard/guardtest"
)

func TestMemoryStore(t *testing.T) {
	guardtest.Run(t, func(*testing.T) guard.Store { return guard.NewMemory() })
}
