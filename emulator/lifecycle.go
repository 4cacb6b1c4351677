package emulator

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"time"
)

// Lifecycle sets how long the steps that follow an accepted request take:
// an order is pending until its payment settles (paid or payment_failed),
// the service of a paid order is provisioning until it is active, and a
// slow service action (start, stop, reboot, reinstall) is pending until it
// completes. Each step happens on its own timer and sends its webhook when
// it happens.
//
// The zero value settles every step inside the request, as the emulator
// always did: the order's 201 says paid, its service is active and every
// action answers 200 completed. "khproxy emulator" defaults to
// DefaultPaymentDelay, DefaultProvisionDelay and DefaultActionDelay
// instead, so that an app's polling and webhook paths are exercised.
type Lifecycle struct {
	// PaymentDelay: an accepted order is "pending" this long, then "paid"
	// (or "payment_failed" when its card declines at capture).
	PaymentDelay time.Duration
	// ProvisionDelay: a paid order's service is "provisioning" this long,
	// then "active".
	ProvisionDelay time.Duration
	// ActionDelay: a slow action is answered 202 with status "pending" and
	// completes this long after.
	ActionDelay time.Duration
	// Manual: no step happens by itself, whatever the delays; each waits
	// for Advance (POST /__emulator/advance). For deterministic tests of
	// the in-between states.
	Manual bool
}

// CLI defaults of the lifecycle (the Go API's zero value is instant).
const (
	DefaultPaymentDelay   = time.Second
	DefaultProvisionDelay = 2 * time.Second
	DefaultActionDelay    = 2 * time.Second
)

func (l Lifecycle) validate() error {
	if l.PaymentDelay < 0 || l.ProvisionDelay < 0 || l.ActionDelay < 0 {
		return errors.New("emulator: lifecycle delays must not be negative")
	}
	return nil
}

// scheduler runs lifecycle steps later, on timers or on Advance. It is
// safe for concurrent use; a step runs at most once.
type scheduler struct {
	mu     sync.Mutex
	cfg    Lifecycle
	steps  map[uint64]*step
	seq    uint64
	closed bool
}

type step struct {
	seq   uint64
	which delayOf
	timer *time.Timer // nil in manual mode
	run   func()
}

func newScheduler(cfg Lifecycle) *scheduler {
	return &scheduler{cfg: cfg, steps: map[uint64]*step{}}
}

// delayOf picks one of the lifecycle's delays.
type delayOf func(Lifecycle) time.Duration

func paymentDelay(l Lifecycle) time.Duration   { return l.PaymentDelay }
func provisionDelay(l Lifecycle) time.Duration { return l.ProvisionDelay }
func actionDelay(l Lifecycle) time.Duration    { return l.ActionDelay }

// later runs fn after the delay that which picks, or at once in the
// calling goroutine when that delay is zero and the lifecycle is not
// manual. It reports whether fn was deferred. After close, deferred steps
// are dropped. The caller must not hold e.mu: fn takes it.
func (s *scheduler) later(which delayOf, fn func()) bool {
	s.mu.Lock()
	d := which(s.cfg)
	if d == 0 && !s.cfg.Manual {
		s.mu.Unlock()
		fn()
		return false
	}
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	s.seq++
	st := &step{seq: s.seq, which: which, run: fn}
	s.steps[st.seq] = st
	if !s.cfg.Manual {
		s.armLocked(st, d)
	}
	return true
}

// armLocked starts st's timer; s.mu must be held.
func (s *scheduler) armLocked(st *step, d time.Duration) {
	seq := st.seq
	st.timer = time.AfterFunc(d, func() {
		if st := s.take(seq); st != nil {
			st.run()
		}
	})
}

// take removes and returns step seq, or nil when it already ran or was
// dropped.
func (s *scheduler) take(seq uint64) *step {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.steps[seq]
	delete(s.steps, seq)
	return st
}

// advance runs every step that is waiting now, in the order they were
// scheduled, and returns how many ran. Steps they schedule wait for the
// next advance (or their timer).
func (s *scheduler) advance() int {
	s.mu.Lock()
	due := make([]*step, 0, len(s.steps))
	for _, st := range s.steps {
		due = append(due, st)
	}
	for _, st := range due {
		if st.timer != nil {
			st.timer.Stop()
		}
		delete(s.steps, st.seq)
	}
	s.mu.Unlock()
	slices.SortFunc(due, func(a, b *step) int { return cmp.Compare(a.seq, b.seq) })
	for _, st := range due {
		st.run()
	}
	return len(due)
}

// drop discards every waiting step; with closing, later steps are
// dropped too.
func (s *scheduler) drop(closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for seq, st := range s.steps {
		if st.timer != nil {
			st.timer.Stop()
		}
		delete(s.steps, seq)
	}
	if closing {
		s.closed = true
	}
}

func (s *scheduler) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.steps)
}

func (s *scheduler) config() Lifecycle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// setConfig replaces the timing. Leaving manual mode starts the timers of
// the steps that were waiting for Advance, each with its new delay.
func (s *scheduler) setConfig(l Lifecycle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = l
	if l.Manual {
		return
	}
	for _, st := range s.steps {
		if st.timer == nil {
			s.armLocked(st, st.which(l))
		}
	}
}

// Advance runs every lifecycle step that is waiting now (payments,
// provisioning, slow actions), in the order they were scheduled, each with
// its webhook, and returns how many ran. Steps those steps start (a paid
// order's provisioning) wait for their own delay or the next Advance, so a
// test in Manual mode can look at every state in between. Safe for
// concurrent use.
func (e *Emulator) Advance() int { return e.life.advance() }

// PendingSteps returns how many lifecycle steps are waiting. Safe for
// concurrent use.
func (e *Emulator) PendingSteps() int { return e.life.pending() }

// SetLifecycle replaces the lifecycle timing for steps scheduled from now
// on; steps already waiting keep their timers (Advance runs them at once),
// and when Manual is turned off, steps that were waiting for Advance start
// their new delay now.
// It returns an error for negative delays and is safe for concurrent use.
func (e *Emulator) SetLifecycle(l Lifecycle) error {
	if err := l.validate(); err != nil {
		return err
	}
	e.life.setConfig(l)
	return nil
}

// Lifecycle returns the current lifecycle timing. Safe for concurrent use.
func (e *Emulator) Lifecycle() Lifecycle { return e.life.config() }
