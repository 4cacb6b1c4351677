package heldbody

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// Budget bounds the bytes of request bodies held in memory at once. Room is
// handed out first come, first served, so that a large body is not starved
// by a stream of small ones. Only a Body takes and gives back room.
//
// Create a Budget with NewBudget: the zero value has no room at all, and
// refuses with ErrNeverFits every body but one declared empty. Safe for
// concurrent use.
type Budget struct {
	limit int64

	mu      sync.Mutex
	used    int64
	peak    int64
	waiters list.List // of *budgetWaiter, oldest first
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed once the bytes are granted
}

var (
	// ErrNeverFits is returned when a body needs more than the whole budget.
	ErrNeverFits = errors.New("the body is larger than the memory budget")
	// ErrNoRoom is returned when no room came free within the wait.
	ErrNoRoom = errors.New("no room in the memory budget within the wait")
)

// NewBudget returns a Budget of limit bytes, none of them reserved.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Limit returns the budget's size in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// acquire reserves n bytes, waiting at most wait for room. It fails at once
// with ErrNeverFits when n exceeds the whole budget, with ErrNoRoom when the
// wait ran out, and with ctx's error when ctx ends first.
func (b *Budget) acquire(ctx context.Context, n int64, wait time.Duration) error {
	if n <= 0 {
		return nil
	}
	if n > b.limit {
		return ErrNeverFits
	}
	b.mu.Lock()
	if b.waiters.Len() == 0 && b.used+n <= b.limit {
		b.grantLocked(n)
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	elem := b.waiters.PushBack(w)
	b.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-timer.C:
		err = ErrNoRoom
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready:
		return nil // granted meanwhile: keep it
	default:
	}
	b.waiters.Remove(elem)
	// Whoever queued behind this waiter may fit now.
	b.wakeLocked()
	return err
}

// release returns n bytes to the budget.
func (b *Budget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.wakeLocked()
}

func (b *Budget) grantLocked(n int64) {
	b.used += n
	b.peak = max(b.peak, b.used)
}

// wakeLocked grants room to the oldest waiters, in order, while they fit.
func (b *Budget) wakeLocked() {
	for e := b.waiters.Front(); e != nil; e = b.waiters.Front() {
		w := e.Value.(*budgetWaiter)
		if b.used+w.n > b.limit {
			return
		}
		b.grantLocked(w.n)
		b.waiters.Remove(e)
		close(w.ready)
	}
}

// Stats describes a Budget at one moment.
type Stats struct {
	Limit    int64 // the budget's size
	Reserved int64 // bytes reserved by bodies now
	Peak     int64 // most bytes ever reserved at once
	Waiting  int   // bodies waiting for room
}

// Stats reports the budget's state. Safe for concurrent use.
func (b *Budget) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{Limit: b.limit, Reserved: b.used, Peak: b.peak, Waiting: b.waiters.Len()}
}
