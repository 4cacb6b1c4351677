package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// Callers that know nothing of idempotency retry on their own: after a
// timeout or a broken connection they send the same request again. For
// requests that get an automatic Idempotency-Key, flights makes such a retry
// harmless:
//
//   - while a request is in flight, an identical one (same method, target and
//     body) waits for it and gets the same answer;
//   - when a request's answer did not reach its caller (the caller left, the
//     connection broke, or khproxy answered 502/504 or the API 5xx), its key
//     is kept for the window, and an identical request reuses it, so the API
//     replays its stored answer instead of placing a second order;
//   - once an answer (below 500) was delivered, the key is forgotten: two
//     identical orders sent on purpose, each answered, make two orders.
type flights struct {
	mu         sync.Mutex
	inflight   map[string]*flight
	unanswered *expirable.LRU[string, string] // fingerprint -> key
}

// maxUnanswered bounds the remembered keys; the oldest go first.
const maxUnanswered = 10000

// captureLimit bounds the copy of a leader's response kept for followers.
// Larger answers are not shared; followers then ask the API with the same key.
const captureLimit = 1 << 20

// flight is one in-flight automatic-key request that identical requests may
// wait for.
type flight struct {
	fp   string
	key  string
	done chan struct{}
	// result is set before done is closed; nil when the answer could not be
	// kept whole.
	result *captured
}

// captured is a complete response that followers can be given.
type captured struct {
	status int
	header http.Header
	body   []byte
}

func newFlights(window time.Duration) *flights {
	return &flights{
		inflight:   map[string]*flight{},
		unanswered: expirable.NewLRU[string, string](maxUnanswered, nil, window),
	}
}

// fingerprint identifies "the same request" for a caller's retry.
func fingerprint(method, target, bodyHash string) string {
	sum := sha256.Sum256([]byte(method + "\n" + target + "\n" + bodyHash))
	return hex.EncodeToString(sum[:])
}

// join returns the flight for fp. leader is true when the caller must send
// the request itself, with f.key: the key of an unanswered earlier attempt if
// there is one, else key.
func (fs *flights) join(fp, key string) (f *flight, leader bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.inflight[fp]; ok {
		return f, false
	}
	if k, ok := fs.unanswered.Get(fp); ok {
		key = k
	}
	f = &flight{fp: fp, key: key, done: make(chan struct{})}
	fs.inflight[fp] = f
	return f, true
}

// finish ends a leader's flight: followers get result, and the key is kept
// for a caller's retry unless the answer was delivered.
func (fs *flights) finish(f *flight, delivered bool, result *captured) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	delete(fs.inflight, f.fp)
	if delivered {
		fs.unanswered.Remove(f.fp)
	} else {
		fs.unanswered.Add(f.fp, f.key)
	}
	f.result = result
	close(f.done)
}

// forget drops f's key from the unanswered keys, unless another flight has
// put a different key there since.
func (fs *flights) forget(f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if k, ok := fs.unanswered.Peek(f.fp); ok && k == f.key {
		fs.unanswered.Remove(f.fp)
	}
}

// joinFlight makes r the leader of its flight, or waits for the leader of an
// identical request and answers with its result. It returns whether r must
// be sent upstream by the caller, with its flight; a follower gets the flight
// whose result it was answered with, or nil when its caller left first.
func (p *Proxy) joinFlight(ctx context.Context, w *recorder, r *http.Request, ex *exchange) (*flight, bool) {
	fp := fingerprint(r.Method, ex.target, ex.bodyHash)
	key := ex.idemKey
	for {
		f, leader := p.flights.join(fp, key)
		ex.idemKey = f.key
		r.Header.Set("Idempotency-Key", f.key)
		if leader {
			return f, true
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			p.fail(w, r, ex, ctx.Err())
			return nil, false
		}
		if f.result != nil {
			ex.shared = true
			ex.upstreamStatus = f.result.status
			ex.requestID = f.result.header.Get("X-Request-Id")
			w.replay(f.result)
			return f, false
		}
		// The leader's answer was not kept; ask the API with its key, which
		// makes it replay its stored answer.
		key = f.key
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
