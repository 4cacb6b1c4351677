package emulator

import (
	"errors"
	"net/http"
	"time"
)

// Faults are injected misbehaviours for testing a client's retry safety.
// The zero value injects nothing. Counters count down as faults fire; read
// the remaining counts with Emulator.Faults and replace them at any time
// with Emulator.SetFaults. Precedence per request: FailCount first (such a
// request does no work and consumes no Delay count), then Delay, then
// DropAfterCommit.
type Faults struct {
	// DropAfterCommit: the next N committed writes (an order placed, a
	// service action run, a webhook URL set: a 2xx answer to POST/PUT that
	// was not an idempotent replay) are committed to state and to the
	// idempotency store, then the connection is hijacked and closed without
	// any response bytes. This needs an HTTP/1.x connection (Hijacker);
	// elsewhere the handler aborts with http.ErrAbortHandler instead.
	DropAfterCommit int

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
	// 5xx when > 0.
	FailCount  int
	FailStatus int
	RetryAfter time.Duration

	// ClockOffset shifts the emulator's clock: the ±300 s timestamp window,
	// the nonce expiry, the Date header of every response, webhook
	// timestamps and created_at fields all use Now()+ClockOffset.
	ClockOffset time.Duration

	// DuplicateWebhooks: the next N webhook deliveries (one event to one
	// URL) are sent twice, the second a separate delivery with the same
	// event id and body, as production senders do now and then. Receivers
	// must process each event once.
	DuplicateWebhooks int
}

func (f Faults) validate() error {
	if f.DropAfterCommit < 0 || f.DelayCount < 0 || f.FailCount < 0 || f.Delay < 0 || f.RetryAfter < 0 || f.DuplicateWebhooks < 0 {
		return errors.New("emulator: fault counts and durations must not be negative")
	}
	if f.FailStatus != 0 && f.FailStatus != http.StatusTooManyRequests && (f.FailStatus < 500 || f.FailStatus > 599) {
		return errors.New("emulator: FailStatus must be 429 or 5xx")
	}
	return nil
}

// SetFaults replaces the fault configuration (including remaining counts).
// It is safe for concurrent use with ServeHTTP and returns an error, leaving
// the faults unchanged, for negative values or a FailStatus that is not 429
// or 5xx.
func (e *Emulator) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	e.faultMu.Lock()
	e.faults = f
	e.faultMu.Unlock()
	return nil
}

// Faults returns the current fault configuration with the remaining counts.
// It is safe for concurrent use.
func (e *Emulator) Faults() Faults {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	return e.faults
}

// takeFail consumes one FailCount and returns the error to answer with.
func (e *Emulator) takeFail() *apiError {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	f := &e.faults
	if f.FailCount == 0 {
		return nil
	}
	f.FailCount--
	status := f.FailStatus
	if status == 0 {
		status = http.StatusServiceUnavailable
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

// takeDrop consumes one DropAfterCommit.
func (e *Emulator) takeDrop() bool {
	e.faultMu.Lock()
	defer e.faultMu.Unlock()
	if e.faults.DropAfterCommit == 0 {
		return false
	}
	e.faults.DropAfterCommit--
	return true
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

// serverNow is the emulator clock: Now() + ClockOffset.
func (e *Emulator) serverNow() time.Time {
	e.faultMu.Lock()
	off := e.faults.ClockOffset
	e.faultMu.Unlock()
	return e.now().Add(off)
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
