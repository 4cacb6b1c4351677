package proxy

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// budget bounds the bytes of request bodies held in memory at once. Room is
// handed out first come, first served, so that a large body is not starved
// by a stream of small ones. Safe for concurrent use.
type budget struct {
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
	// errNeverFits: the request needs more than the whole budget.
	errNeverFits = errors.New("the body is larger than the memory budget")
	// errNoRoom: no room came free within the wait.
	errNoRoom = errors.New("no room in the memory budget within the wait")
)

func newBudget(limit int64) *budget { return &budget{limit: limit} }

// acquire reserves n bytes, waiting at most wait for room. It fails at once
// with errNeverFits when n exceeds the whole budget, with errNoRoom when the
// wait ran out, and with ctx's error when ctx ends first.
func (b *budget) acquire(ctx context.Context, n int64, wait time.Duration) error {
	if n <= 0 {
		return nil
	}
	if n > b.limit {
		return errNeverFits
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
		err = errNoRoom
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
func (b *budget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.wakeLocked()
}

func (b *budget) grantLocked(n int64) {
	b.used += n
	b.peak = max(b.peak, b.used)
}

// wakeLocked grants room to the oldest waiters, in order, while they fit.
func (b *budget) wakeLocked() {
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

// BudgetStats describes the memory budget for request bodies at one moment.
type BudgetStats struct {
	Limit    int64 // Options.MaxInflightBytes
	Reserved int64 // bytes reserved by bodies now
	Peak     int64 // most bytes ever reserved at once
	Waiting  int   // requests waiting for room
}

// BodyBudget reports the memory budget's state. Safe for concurrent use.
func (p *Proxy) BodyBudget() BudgetStats {
	b := p.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	return BudgetStats{Limit: b.limit, Reserved: b.used, Peak: b.peak, Waiting: b.waiters.Len()}
}
