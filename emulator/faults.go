package emulator

import (
	"errors"
	"net/http"
	"time"
)

// Faults are injected misbehaviours for testing a client's retry safety.
// The zero value injects nothing. Counters count down as faults fire; read
// the remaining counts with Emulator.Faults and replace them at any time
// with Emulator.SetFaults.
//
// Precedence per request: FailCount, then Random's faults before any work
// (such a request does no work and consumes nothing else); then Delay;
// then, for a committed write only, SlowAfterCommit (a wait), then
// DropAfterCommit or else FailAfterCommit; Random's after-commit faults
// apply only to a committed write that no counted fault touched.
//
// A committed write is a 2xx answer to POST or PUT that was not an
// idempotent replay: an order placed, a service action run, a webhook URL
// set. For every after-commit fault the write and its idempotency record
// (holding the real answer) are kept; only the answer on the wire is
// missing, late or a 5xx, so a retry with the same Idempotency-Key
// replays the stored answer.
type Faults struct {
	// DropAfterCommit: the next N committed writes are committed, then the
	// connection is hijacked and closed without any response bytes. This
	// needs an HTTP/1.x connection (Hijacker); elsewhere the handler
	// aborts with http.ErrAbortHandler instead.
	DropAfterCommit int

	// FailAfterCommit: the next N committed writes are committed, then
	// answered 500 injected_fault (the emulator's type, never the API's
	// internal_error), reason injected_fault_after_commit,
	// instead of their real answer (which the idempotency record keeps).
	// A committed write that DropAfterCommit drops does not consume it.
	FailAfterCommit int

	// SlowAfterCommit holds back the answer to committed writes: the write
	// is committed, then the emulator waits SlowAfterCommit before it
	// finishes the idempotency record and answers. Unlike Delay the wait
	// does not end when the client goes away (the server has not noticed),
	// so the key stays in progress for the whole wait (see InProgress).
	// SlowAfterCommitCount limits it to the next N committed writes (when
	// it runs out, SlowAfterCommit is reset to 0); 0 slows every committed
	// write while SlowAfterCommit > 0.
	SlowAfterCommit      time.Duration
	SlowAfterCommitCount int

	// Delay holds back answers: the request is fully processed (writes are
	// committed), then the emulator waits Delay before finishing the
	// idempotency record and answering. If the client goes away meanwhile
	// the wait ends early, the write and its idempotency record stay and no
	// answer is written. DelayCount limits the delay to the next N
	// requests (when it runs out, Delay is reset to 0); DelayCount 0
	// delays every request while Delay > 0.
	Delay      time.Duration
	DelayCount int

	// FailCount answers the next N requests (any path, health included)
	// with FailStatus before any work: no auth, no nonce use, no state
	// change. FailStatus must be 429 or 5xx (0 means 503). RetryAfter is
	// sent as Retry-After (whole seconds, >= 1) on 429 (default 1 s) and on
	// 5xx when > 0; Random's 429 and 503 use it too.
	FailCount  int
	FailStatus int
	RetryAfter time.Duration

	// ClockOffset shifts the emulator's clock: the ±300 s timestamp window,
	// the nonce expiry, the Date header of every response, webhook
	// timestamps and created_at fields all use Now()+ClockOffset.
	// Random's clock walk moves it.
	ClockOffset time.Duration

	// DuplicateWebhooks: the next N webhook deliveries (one event to one
	// URL) are sent twice, the second a separate delivery with the same
	// event id and body, as production senders do now and then. Receivers
	// must process each event once.
	DuplicateWebhooks int

	// Random injects faults at random, at given rates, for soak tests.
	// The zero value injects none.
	Random RandomFaults
}

func (f Faults) validate() error {
	if f.DropAfterCommit < 0 || f.FailAfterCommit < 0 || f.SlowAfterCommit < 0 || f.SlowAfterCommitCount < 0 ||
		f.DelayCount < 0 || f.FailCount < 0 || f.Delay < 0 || f.RetryAfter < 0 || f.DuplicateWebhooks < 0 {
		return errors.New("emulator: fault counts and durations must not be negative")
	}
	if f.FailStatus != 0 && f.FailStatus != http.StatusTooManyRequests && (f.FailStatus < 500 || f.FailStatus > 599) {
		return errors.New("emulator: FailStatus must be 429 or 5xx")
	}
	return f.Random.validate()
}

// SetFaults replaces the fault configuration (including remaining counts)
// and restarts Random's clock walk and random source. It is safe for
// concurrent use with ServeHTTP and returns an error, leaving the faults
// unchanged, for negative values, a FailStatus that is not 429 or 5xx, or
// invalid RandomFaults.
func (e *Emulator) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	e.faultMu.Lock()
	e.setFaultsLocked(f)
	e.faultMu.Unlock()
	return nil
}

// setFaultsLocked installs f (validated); e.faultMu must be held.
func (e *Emulator) setFaultsLocked(f Faults) {
	e.faults = f
	e.rng = newFaultRand(f.Random.Seed)
	e.walkNext = time.Time{}
}

// Faults returns the current fault configuration with the remaining counts.
// It is safe for concurrent use.
func (e *Emulator) Faults() Faults {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	return e.faults
}

// InjectedFaults returns how many faults of each kind fired since New or
// the last Reset, keyed by fail (FailCount), unavailable and rate_limited
// (Random, before any work), delay, slow_after_commit,
// drop_after_commit, fail_after_commit (counted or random) and
// clock_step (a step of the clock walk). The map is a copy; safe for
// concurrent use.
func (e *Emulator) InjectedFaults() map[string]int {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	return copyCounts(e.injected)
}

// injectedLocked counts one fault of kind; e.faultMu must be held.
func (e *Emulator) injectedLocked(kind string) {
	if e.injected == nil {
		e.injected = map[string]int{}
	}
	e.injected[kind]++
}

// takeFail consumes one FailCount, or draws Random's faults before any
// work, and returns the error to answer with (nil: none).
func (e *Emulator) takeFail() *apiError {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	f := &e.faults
	status := 0
	switch {
	case f.FailCount > 0:
		f.FailCount--
		status = f.FailStatus
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		e.injectedLocked("fail")
	default:
		switch e.drawBeforeWorkLocked() {
		case "unavailable":
			status = http.StatusServiceUnavailable
		case "rate_limited":
			status = http.StatusTooManyRequests
		default:
			return nil
		}
	}
	ae := &apiError{code: codeInjected, status: status,
		detail: "Injected fault: the emulator answered before doing any work."}
	if status == http.StatusTooManyRequests {
		ae.code, ae.status, ae.reason = codeRateLimited, 0, "injected_fault"
		ae.retryAfter = max(f.RetryAfter, time.Second)
	} else if f.RetryAfter > 0 {
		ae.retryAfter = f.RetryAfter
	}
	return ae
}

// takeDelay consumes one DelayCount and returns the delay for this request.
func (e *Emulator) takeDelay() time.Duration {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	f := &e.faults
	if f.Delay <= 0 {
		return 0
	}
	e.injectedLocked("delay")
	if f.DelayCount > 0 {
		f.DelayCount--
		if f.DelayCount == 0 {
			d := f.Delay
			f.Delay = 0
			return d
		}
	}
	return f.Delay
}

// afterCommit is what happens to a committed write's answer.
type afterCommit struct {
	slow time.Duration // wait this long first (the key stays in progress)
	drop bool          // then close the connection without an answer
	fail bool          // or answer 500 instead of the real answer
}

// takeAfterCommit consumes the counted after-commit faults for one
// committed write, or, when none fired, draws Random's.
func (e *Emulator) takeAfterCommit() afterCommit {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	f := &e.faults
	var a afterCommit
	if f.SlowAfterCommit > 0 {
		a.slow = f.SlowAfterCommit
		if f.SlowAfterCommitCount > 0 {
			f.SlowAfterCommitCount--
			if f.SlowAfterCommitCount == 0 {
				f.SlowAfterCommit = 0
			}
		}
	}
	switch {
	case f.DropAfterCommit > 0:
		f.DropAfterCommit--
		a.drop = true
	case f.FailAfterCommit > 0:
		f.FailAfterCommit--
		a.fail = true
	case a.slow == 0:
		switch e.drawAfterCommitLocked() {
		case "drop_after_commit":
			a.drop = true
		case "fail_after_commit":
			a.fail = true
		case "slow_after_commit":
			a.slow = f.Random.SlowDelay
		}
	}
	if a.slow > 0 {
		e.injectedLocked("slow_after_commit")
	}
	if a.drop {
		e.injectedLocked("drop_after_commit")
	}
	if a.fail {
		e.injectedLocked("fail_after_commit")
	}
	return a
}

// failedAfterCommit is the answer a FailAfterCommit write gets.
func failedAfterCommit(reqID string) *response {
	return errorResponse(reqID, &apiError{code: codeInjected, status: http.StatusInternalServerError, reason: "injected_fault_after_commit",
		detail: "Injected fault: the request was carried out and its answer stored, but this answer is an error. Retry with the same Idempotency-Key to get the stored answer."})
}

// takeDuplicate consumes one DuplicateWebhooks.
func (e *Emulator) takeDuplicate() bool {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	if e.faults.DuplicateWebhooks == 0 {
		return false
	}
	e.faults.DuplicateWebhooks--
	return true
}

// serverNow is the emulator clock: Now() + ClockOffset, after any steps
// of Random's clock walk that are due.
func (e *Emulator) serverNow() time.Time {
	now := e.now()
	e.faultMu.Lock()
	e.walkClockLocked(now)
	off := e.faults.ClockOffset
	e.faultMu.Unlock()
	return now.Add(off)
}

// dropConnection closes the client connection without an answer.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2, recorders): abort the response the way
		// net/http documents; the server resets the stream silently.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
