package heldbody

import "khproxy/internal/bytebudget"

// Budget bounds the bytes of request bodies held in memory at once; a Body
// takes its room from it as its bytes arrive. It is bytebudget.Budget, so
// that other listeners can keep their bodies within budgets of their own
// without knowing this package.
//
// Create a Budget with NewBudget. Safe for concurrent use.
type Budget = bytebudget.Budget

// NewBudget returns a Budget of limit bytes, none of them reserved.
func NewBudget(limit int64) *Budget { return bytebudget.New(limit) }

var (
	// ErrNeverFits is returned when a body needs more than the whole budget.
	ErrNeverFits = bytebudget.ErrNeverFits
	// ErrNoRoom is returned when no room came free within the wait.
	ErrNoRoom = bytebudget.ErrNoRoom
)

// Stats describes a Budget at one moment.
type Stats = bytebudget.Stats
