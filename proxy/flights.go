package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
	"time"
)

// Callers that know nothing of idempotency retry on their own: after a
// timeout or a broken connection they give up on their request and send the
// same one again. For requests that get an automatic Idempotency-Key,
// flights makes such a retry harmless, and only such a retry:
//
//   - a request whose identical twin (same method, target and body) is in
//     flight but abandoned, its caller gone before the answer, claims it: it
//     waits for that request and gets its answer. Each abandoned request is
//     claimed by one retry at a time;
//   - when an abandoned request's answer reached nobody (its caller left, the
//     connection broke, khproxy answered 502/504 or the API 5xx), its key is
//     kept for the window, and the next identical request takes it, so that
//     the API replays its stored answer instead of placing a second order;
//   - an identical request while the earlier one's caller is still connected
//     is a purchase of its own, with its own key. A caller's disconnect is
//     noticed a moment after its retry may arrive, so such a request first
//     waits up to the grace period for the earlier caller to leave.
type flights struct {
	mu         sync.Mutex
	inflight   map[string][]*flight // fingerprint -> leaders in flight
	unanswered RetryMemory          // fingerprint -> key
	changed    chan struct{}        // closed and replaced when a caller leaves or a flight ends
	grace      time.Duration
}

// captureLimit bounds the copy of a leader's response kept for followers.
// Larger answers are not shared; followers then ask the API with the same key.
const captureLimit = 1 << 20

// retryGrace is how long an identical request waits for the caller of an
// earlier one in flight to turn out gone: on loopback a client's disconnect
// reaches khproxy well within it, and identical purchases made on purpose at
// the same moment are delayed by it at most.
const retryGrace = 300 * time.Millisecond

// flight is one in-flight automatic-key request.
type flight struct {
	fp   string
	key  string
	done chan struct{}

	// Guarded by flights.mu.
	callerGone bool // the leader's caller left before its answer
	claimed    bool // a retry waits for this flight's answer
	finished   bool

	// Set before done is closed.
	delivered bool      // the answer reached the leader's caller
	result    *captured // nil when the answer could not be kept whole
}

// captured is a complete response that followers can be given.
type captured struct {
	status int
	header http.Header
	body   []byte
}

func newFlights(unanswered RetryMemory, grace time.Duration) *flights {
	return &flights{
		inflight:   map[string][]*flight{},
		unanswered: unanswered,
		changed:    make(chan struct{}),
		grace:      grace,
	}
}

// fingerprint identifies "the same request" for a caller's retry.
func fingerprint(method, target, bodyHash string) string {
	sum := sha256.Sum256([]byte(method + "\n" + target + "\n" + bodyHash))
	return hex.EncodeToString(sum[:])
}

// join returns the flight for a request with fingerprint fp. leader is true
// when the caller must send the request itself, with f.key: the key of an
// unanswered earlier request if there is one, else key. Otherwise f is an
// abandoned identical request that the caller has claimed: it waits for
// f.done. err is ctx's error when ctx ended while waiting.
func (fs *flights) join(ctx context.Context, fp, key string) (f *flight, leader bool, err error) {
	var grace *time.Timer
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()
	waited := false
	for {
		fs.mu.Lock()
		if f := fs.claimLocked(fp); f != nil {
			fs.mu.Unlock()
			return f, false, nil
		}
		if k, ok := fs.takeUnanswered(fp); ok {
			key, waited = k, true
		}
		if waited || len(fs.inflight[fp]) == 0 {
			f := fs.startLocked(fp, key)
			fs.mu.Unlock()
			return f, true, nil
		}
		changed := fs.changed
		fs.mu.Unlock()
		if grace == nil {
			grace = time.NewTimer(fs.grace)
		}
		select {
		case <-changed:
		case <-grace.C:
			waited = true
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// claimLocked claims an abandoned, unclaimed flight for fp, if there is one.
func (fs *flights) claimLocked(fp string) *flight {
	for _, f := range fs.inflight[fp] {
		if f.callerGone && !f.claimed {
			f.claimed = true
			return f
		}
	}
	return nil
}

// start makes a leader that sends its request with key.
func (fs *flights) start(fp, key string) *flight {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.startLocked(fp, key)
}

func (fs *flights) startLocked(fp, key string) *flight {
	f := &flight{fp: fp, key: key, done: make(chan struct{})}
	fs.inflight[fp] = append(fs.inflight[fp], f)
	return f
}

// leave records that f's caller went away before its answer: f may now be
// claimed by the caller's retry.
func (fs *flights) leave(f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f.callerGone = true
	fs.broadcastLocked()
}

// unclaim gives f up: the retry that claimed it went away too. If f has
// ended meanwhile, its key is kept for the next retry, as finish would have.
func (fs *flights) unclaim(f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f.claimed = false
	if f.finished && !f.delivered {
		fs.keepUnanswered(f.fp, f.key)
	}
	fs.broadcastLocked()
}

// finish ends a leader's flight. Unless the answer was delivered, its key is
// kept for the caller's retry; a retry that claimed f takes over that duty.
func (fs *flights) finish(f *flight, delivered bool, result *captured) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	leaders := fs.inflight[f.fp]
	for i, g := range leaders {
		if g == f {
			leaders = append(leaders[:i], leaders[i+1:]...)
			break
		}
	}
	if len(leaders) == 0 {
		delete(fs.inflight, f.fp)
	} else {
		fs.inflight[f.fp] = leaders
	}
	if !delivered && !f.claimed {
		fs.keepUnanswered(f.fp, f.key)
	}
	f.finished, f.delivered, f.result = true, delivered, result
	close(f.done)
	fs.broadcastLocked()
}

// keep keeps f's key for the next retry: the answer a claiming retry was
// given did not reach its caller either.
func (fs *flights) keep(f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.keepUnanswered(f.fp, f.key)
}

// takeUnanswered and keepUnanswered are the only uses of the unanswered keys.
// Called with fs.mu held.
func (fs *flights) takeUnanswered(fp string) (string, bool) {
	key, ok := fs.unanswered.Get(fp)
	if ok {
		fs.unanswered.Forget(fp, key)
	}
	return key, ok
}

func (fs *flights) keepUnanswered(fp, key string) { fs.unanswered.Add(fp, key) }

func (fs *flights) broadcastLocked() {
	close(fs.changed)
	fs.changed = make(chan struct{})
}

// joinFlight makes r the leader of its flight, or lets it wait for the
// abandoned identical request it claimed and answers with that one's
// result. It returns whether r must be sent upstream by the caller, with its
// flight.
func (p *Proxy) joinFlight(ctx context.Context, w *recorder, r *http.Request, ex *exchange) (*flight, bool) {
	fp := fingerprint(r.Method, ex.target, ex.bodyHash)
	own := ex.idemKey
	for {
		f, leader, err := p.flights.join(ctx, fp, own)
		if err != nil {
			p.fail(w, r, ex, err)
			return nil, false
		}
		ex.idemKey, ex.keySource = f.key, KeyAuto
		if !leader || f.key != own {
			ex.keySource = KeyReused
		}
		r.Header.Set("Idempotency-Key", f.key)
		if leader {
			return f, true
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			p.flights.unclaim(f)
			p.fail(w, r, ex, ctx.Err())
			return nil, false
		}
		switch {
		case f.delivered:
			// Its caller got the answer after all: r is not its retry
			// but a purchase of its own.
			continue
		case f.result != nil:
			p.replayShared(w, r, ex, f)
			return nil, false
		default:
			// The answer was not kept whole: ask the API with its key,
			// which makes it replay its stored answer.
			return p.flights.start(fp, f.key), true
		}
	}
}

// replayShared answers r with the result of the flight it claimed.
func (p *Proxy) replayShared(w *recorder, r *http.Request, ex *exchange, f *flight) {
	ex.shared = true
	ex.upstreamStatus = f.result.status
	ex.requestID = f.result.header.Get("X-Request-Id")
	w.replay(f.result)
	if !w.finish(r.Context()) || f.result.status >= 500 {
		p.flights.keep(f)
	}
}

// endFlight ends a leader's flight once its answer was written (or not).
func (p *Proxy) endFlight(f *flight, ex *exchange, rec *recorder, aborted bool) {
	delivered := !aborted && rec.err == nil && ex.upstreamStatus > 0 && ex.upstreamStatus < 500
	var result *captured
	if !aborted && !rec.overflow && rec.status != 0 {
		result = &captured{status: rec.status, header: rec.header, body: rec.capture.Bytes()}
	}
	p.flights.finish(f, delivered, result)
}
