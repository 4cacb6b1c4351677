package proxy

import (
	"cmp"
	"net/http"
	"slices"
	"sync"
	"time"
)

// inflightSet lists the requests being forwarded, so that the ones a
// shutdown cuts can be named. Safe for concurrent use; the zero value is
// empty and ready.
type inflightSet struct {
	mu sync.Mutex
	m  map[*exchange]inflightEntry
}

type inflightEntry struct {
	method string
	since  time.Time
}

// track lists ex until the returned func is called. ex's target and key must
// no longer change.
func (p *Proxy) track(method string, ex *exchange) (untrack func()) {
	s := &p.inflight
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[*exchange]inflightEntry{}
	}
	s.m[ex] = inflightEntry{method: method, since: p.now()}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.m, ex)
	}
}

// LogInDoubt logs a warning for each request that has been sent upstream and
// has not finished: its caller cannot know whether it took effect. khproxy
// calls it when the shutdown grace period runs out, before the remaining
// connections are cut, so that an operator knows which orders to check. It
// returns how many it logged. Safe for concurrent use.
func (p *Proxy) LogInDoubt() int {
	s := &p.inflight
	s.mu.Lock()
	type doubt struct {
		inflightEntry
		ex *exchange
	}
	var list []doubt
	for ex, e := range s.m {
		if ex.up.Sent.Load() {
			list = append(list, doubt{e, ex})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b doubt) int { return cmp.Compare(a.since.UnixNano(), b.since.UnixNano()) })
	for _, d := range list {
		p.log.Warn("request in doubt: shutting down before its answer; check whether it took effect",
			"request_id", d.ex.id, "method", d.method, "path", d.ex.target, "idempotency_key", d.ex.idemKey, "running", p.now().Sub(d.since).Round(time.Millisecond))
	}
	return len(list)
}

// dropBody gives the body's room in the budget back: the request is over.
func (ex *exchange) dropBody() {
	if ex.body != nil {
		ex.body.Drop()
	}
}

// receivingSet lists the requests whose bodies are being read: nothing of
// theirs has been sent, so a shutdown may cut them. Safe for concurrent use;
// the zero value is empty and ready.
type receivingSet struct {
	mu       sync.Mutex
	stopping bool
	m        map[*recorder]struct{}
}

// receiving lists w while its request's body is read, until the returned
// func is called. Once khproxy is stopping, the read is cut at once.
func (p *Proxy) receiving(w *recorder) (done func()) {
	s := &p.receivers
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		cutRead(w)
	}
	if s.m == nil {
		s.m = map[*recorder]struct{}{}
	}
	s.m[w] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.m, w)
	}
}

// stopping reports whether StopReceiving was called.
func (p *Proxy) stopping() bool {
	p.receivers.mu.Lock()
	defer p.receivers.mu.Unlock()
	return p.receivers.stopping
}

// StopReceiving cuts the requests whose bodies are still arriving, and any
// that start later, and the requests still in line for their first
// rate-limit token: they get 503 shutting_down, nothing having been sent
// upstream. khproxy calls it when its listener stops accepting, so that a
// slow upload or a long line cannot hold up the shutdown. Safe for
// concurrent use.
func (p *Proxy) StopReceiving() {
	p.stopCancel()
	s := &p.receivers
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	for w := range s.m {
		cutRead(w)
	}
}

// cutRead makes the pending and next reads of w's request body fail.
func cutRead(w *recorder) {
	_ = http.NewResponseController(w.ResponseWriter).SetReadDeadline(time.Now())
}
