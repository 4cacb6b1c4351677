// Package bytebudget bounds the bytes of request bodies that a listener
// holds in memory at once, and hands the room out as the bytes arrive.
//
// A Budget is shared by every body of one listener. Each body takes a Hold,
// declaring the most it may ever hold (its claim: the declared
// Content-Length, or the body limit), and grows it step by step, before it
// reads each piece into memory. So a client that declares a large body and
// sends nothing holds nothing, and one that sends a little holds little.
//
// Bodies that each hold part of what they need, and wait for more, could
// wait on each other for ever. The Budget avoids that as a banker would
// (Dijkstra's banker's algorithm): it grants a step only if, after it, the
// bodies holding room could all still finish in some order, each with what
// the ones before it give back. A step that would leave the budget unsafe
// waits, as one that does not fit does.
//
// The package knows nothing of HTTP: it counts bytes and reports
// ErrNeverFits, ErrNoRoom or the context's error.
package bytebudget

import (
	"container/list"
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Budget bounds the bytes held at once by its Holds. New bodies get their
// first room first come, first served, so that a large body is not starved
// by a stream of small ones; a body that already holds room gets more
// whenever that is safe, so that it can finish and give all of it back.
//
// Create a Budget with New: the zero value has no room at all. Safe for
// concurrent use.
type Budget struct {
	limit int64

	mu      sync.Mutex
	used    int64
	peak    int64
	holds   map[*Hold]struct{} // the holds holding room
	waiters list.List          // of *waiter, oldest first
}

type waiter struct {
	h     *Hold
	n     int64
	ready chan struct{} // closed once the bytes are granted
}

var (
	// ErrNeverFits is returned when a body needs more than the whole budget.
	ErrNeverFits = errors.New("the body is larger than the memory budget")
	// ErrNoRoom is returned when no room came free within the wait.
	ErrNoRoom = errors.New("no room in the memory budget within the wait")
)

// New returns a Budget of limit bytes, none of them reserved.
func New(limit int64) *Budget { return &Budget{limit: limit, holds: map[*Hold]struct{}{}} }

// Limit returns the budget's size in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// Hold is the room one body holds in a Budget. Create it with
// Budget.NewHold; its methods are meant for the one goroutine reading the
// body, except Held and Release, which are safe for concurrent use.
type Hold struct {
	b     *Budget
	claim int64         // the most the body may hold; at most b.limit
	wait  time.Duration // what is left of the body's wait for room
	held  int64         // guarded by b.mu
}

// NewHold returns an empty Hold for a body that may need up to claim
// bytes; claims above the whole budget are cut to it (Grow past the budget
// fails with ErrNeverFits). wait bounds the time the body may wait for room,
// all its steps together. Nothing is reserved until Grow.
func (b *Budget) NewHold(claim int64, wait time.Duration) *Hold {
	return &Hold{b: b, claim: max(0, min(claim, b.limit)), wait: wait}
}

// Claim returns the most the hold may reserve.
func (h *Hold) Claim() int64 { return h.claim }

// Held returns the bytes the hold has reserved.
func (h *Hold) Held() int64 {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	return h.held
}

// Grow reserves n more bytes, waiting for room at most what is left of the
// hold's wait. It fails at once with ErrNeverFits when the hold would
// exceed the whole budget, with ErrNoRoom when the wait ran out, and with
// ctx's error when ctx ends first; nothing is reserved then. A Grow past
// the claim raises the claim.
func (h *Hold) Grow(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	b := h.b
	b.mu.Lock()
	if h.held+n > b.limit {
		b.mu.Unlock()
		return ErrNeverFits
	}
	h.claim = max(h.claim, h.held+n)
	if b.grantableLocked(h, n, true) {
		b.grantLocked(h, n)
		b.mu.Unlock()
		return nil
	}
	w := &waiter{h: h, n: n, ready: make(chan struct{})}
	elem := b.waiters.PushBack(w)
	b.mu.Unlock()

	start := time.Now()
	timer := time.NewTimer(h.wait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
	case <-timer.C:
		err = ErrNoRoom
	case <-ctx.Done():
		err = ctx.Err()
	}
	h.wait = max(0, h.wait-time.Since(start))
	if err == nil {
		return nil
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

// Shrink gives n of the hold's bytes back (all of them, if it holds less).
func (h *Hold) Shrink(n int64) {
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, h.held)
	if n <= 0 {
		return
	}
	h.held -= n
	b.used -= n
	if h.held == 0 {
		delete(b.holds, h)
	}
	b.wakeLocked()
}

// Release gives back all the hold's bytes; the hold may grow again after.
func (h *Hold) Release() { h.Shrink(h.b.limit) }

// Admits reports whether a new body that may need up to claim bytes would
// get a first step of first bytes now, without waiting: for a request that
// asked whether to send its body (Expect: 100-continue), which can be
// answered at once rather than after its body arrived. Claims above the
// whole budget are cut to it, as NewHold does: whether such a body fits is
// known only once it has arrived.
func (b *Budget) Admits(claim, first int64) bool {
	h := b.NewHold(claim, 0)
	if h.claim <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.grantableLocked(h, min(first, h.claim), true)
}

// grantableLocked reports whether n more bytes for h fit and leave the
// budget safe. A body that holds nothing yet (a newcomer) queues, when
// queue is set, behind a newcomer that waits because its step does not
// fit: first come, first served. A newcomer that waits only because its
// step would leave the budget unsafe blocks no one: a client that stalls
// after its first bytes must not hold up the bodies after it.
func (b *Budget) grantableLocked(h *Hold, n int64, queue bool) bool {
	if b.used+n > b.limit {
		return false
	}
	if queue && h.held == 0 && b.newcomerWaitingLocked() {
		return false
	}
	return b.safeLocked(h, n)
}

func (b *Budget) newcomerWaitingLocked() bool {
	for e := b.waiters.Front(); e != nil; e = e.Next() {
		if w := e.Value.(*waiter); w.h.held == 0 && b.used+w.n > b.limit {
			return true
		}
	}
	return false
}

// safeLocked reports whether, with n more bytes granted to h, every hold
// holding room could still get what it may need, in some order, each
// with the room the ones before it give back. The one that needs least
// goes first: the room free only grows as holds finish.
func (b *Budget) safeLocked(h *Hold, n int64) bool {
	free := b.limit - b.used - n
	if h.held+n >= h.claim {
		return true // h can finish now, giving back more than it took
	}
	type holding struct{ need, held int64 }
	hs := make([]holding, 0, len(b.holds)+1)
	most := int64(0)
	add := func(o *Hold, held int64) {
		need := max(0, o.claim-held)
		hs = append(hs, holding{need, held})
		most = max(most, need)
	}
	for o := range b.holds {
		if o != h {
			add(o, o.held)
		}
	}
	add(h, h.held+n)
	if most <= free {
		return true
	}
	slices.SortFunc(hs, func(x, y holding) int { return cmpInt(x.need, y.need) })
	for _, x := range hs {
		if x.need > free {
			return false
		}
		free += x.held
	}
	return true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (b *Budget) grantLocked(h *Hold, n int64) {
	h.held += n
	b.used += n
	b.peak = max(b.peak, b.used)
	b.holds[h] = struct{}{}
}

// wakeLocked grants room to the waiters that may have it now, oldest first.
// Once a newcomer's step does not fit, no later newcomer gets any. A body
// already holding room gets more whenever it is safe, whatever waits before
// it: it will then finish and give it back.
func (b *Budget) wakeLocked() {
	blocked := false
	for e := b.waiters.Front(); e != nil; {
		next := e.Next()
		w := e.Value.(*waiter)
		newcomer := w.h.held == 0
		switch {
		case newcomer && blocked:
		case b.grantableLocked(w.h, w.n, false):
			b.grantLocked(w.h, w.n)
			b.waiters.Remove(e)
			close(w.ready)
		case newcomer && b.used+w.n > b.limit:
			blocked = true
		}
		e = next
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
