// Package flight is the registry of automatic-key requests in flight that
// lets a caller's retry of an abandoned request share its answer, and only
// such a retry.
//
// Callers that know nothing of idempotency retry on their own: after a
// timeout or a broken connection they give up on their request and send the
// same one again. For requests that get an automatic Idempotency-Key, the
// Registry makes such a retry harmless, and only such a retry:
//
//   - a request whose identical twin (same method, target and body) is in
//     flight but abandoned, its caller gone before the answer, claims it: it
//     waits for that request and gets its answer when the answer settles the
//     request; when it does not (the request ended in doubt), the retry
//     sends the request again with the same key. Each abandoned request is
//     claimed by one retry at a time;
//   - when no settling answer reached an abandoned request's caller (it
//     left, the connection broke, or the request ended in doubt), its key
//     is kept for the window, and the next identical request takes it, so
//     that the API replays its stored answer instead of placing a second
//     order;
//   - an identical request while the earlier one's caller is still connected
//     is a purchase of its own, with its own key. A caller's disconnect is
//     noticed a moment after its retry may arrive, so such a request first
//     waits up to the grace period for the earlier caller to leave.
//
// With a Board (several replicas sharing Redis), the same rules hold across
// replicas: every leader is on the board, with its key, whether its caller
// still waits, and its replica's heartbeat. A request finds an abandoned
// flight of another replica there (its caller gone, or its replica silent
// past the heartbeat's lifetime) and claims it: it cannot wait for that
// answer, so it sends its own request with the flight's key, which the API
// answers with the same order (spec §2). While another replica's identical
// flight has its caller waiting, a request waits up to the grace period
// for it to turn out gone, as on one replica, or longer, until its entry
// would have run out had its replica crashed (Board.Lifetime).
//
// The package knows nothing of HTTP servers or of how a request is sent:
// the proxy tells it when a caller leaves and how a flight ended, and
// writes a shared Answer itself.
package flight

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// RetryMemory remembers, for a while, the Idempotency-Key of automatic-key
// requests whose answer did not reach their caller (fingerprint -> key), so
// that the caller's identical retry reuses it. ratelimit.RetryMemory
// implements it, in process or shared through Redis. Implementations are
// safe for concurrent use, never fail, and should answer quickly: the
// Registry calls them under its lock.
type RetryMemory interface {
	// Get returns the key remembered for fp.
	Get(fp string) (key string, ok bool)
	// Add remembers key for fp, replacing any other key.
	Add(fp, key string)
	// Forget drops fp's entry if its key is key.
	Forget(fp, key string)
}

// Board shares the flights of every replica (ratelimit.FlightBoard, in
// Redis). Its methods never fail: when the board cannot be reached they
// answer as if it were empty (Claim: nothing; MarkClaimed: true; Finish:
// false), so that each replica goes on alone. Implementations are safe for
// concurrent use; the Registry never calls them under its lock.
type Board interface {
	// Register puts a leader's flight on the board, its caller waiting.
	Register(fp, id, key string)
	// Leave records that the caller of flight id went away.
	Leave(fp, id string)
	// Claim claims an abandoned, unclaimed flight of fp on another
	// replica (its caller gone, or its replica silent) and returns its
	// key; ok is false when there is none. busy reports that another
	// replica has a flight of fp whose caller may still wait.
	Claim(fp string) (key string, ok, busy bool)
	// MarkClaimed claims this replica's flight id for a local retry;
	// false when another replica claimed it first.
	MarkClaimed(fp, id string) bool
	// Unclaim gives a local claim of flight id up.
	Unclaim(fp, id string)
	// Lifetime is how long an entry lives without its replica's
	// heartbeat: a request waits that long for another replica's
	// identical flight to turn out gone or crashed before it is taken
	// for a purchase of its own.
	Lifetime() time.Duration
	// Finish takes flight id off the board and reports whether it was
	// claimed (the claimer then has its key). When keep is true and it
	// was not claimed, key is kept for fp in the shared retry memory in
	// the same step, so that no retry can find neither the flight nor
	// its key; kept reports that it was.
	Finish(fp, id, key string, keep bool) (claimed, kept bool)
}

// sharedPoll is how often a request waiting for another replica's
// identical flight to turn out gone looks at the board again.
const sharedPoll = 25 * time.Millisecond

// DefaultGrace is how long an identical request waits for the caller of an
// earlier one in flight to turn out gone: on loopback a client's disconnect
// reaches khproxy well within it, and identical purchases made on purpose at
// the same moment are delayed by it at most.
const DefaultGrace = 300 * time.Millisecond

// Answer is a complete response that a flight's followers can be given.
// The zero value is a response without status; an Answer given to Finish
// is only read afterwards, by any number of goroutines.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Flight is one in-flight automatic-key request. Flights are made by a
// Registry (Join, Start); the zero value is not one. Key and Done may be
// called at any time from any goroutine; Delivered and Answer only once
// Done is closed.
type Flight struct {
	fp   string
	id   string // names the flight on the Board
	key  string
	done chan struct{}

	// Guarded by Registry.mu.
	callerGone bool // the leader's caller left before its answer
	claimed    bool // a retry waits for this flight's answer
	finished   bool

	// Set before done is closed.
	delivered bool    // the answer reached the leader's caller
	result    *Answer // nil when the answer could not be kept whole
}

// Key is the Idempotency-Key the flight's request is sent with.
func (f *Flight) Key() string { return f.key }

// Done is closed when the flight's leader called Finish.
func (f *Flight) Done() <-chan struct{} { return f.done }

// Delivered reports whether a settling answer reached the leader's caller.
// Call it once Done is closed.
func (f *Flight) Delivered() bool { return f.delivered }

// Answer is the leader's complete, settling response, or nil when there is
// none to share. Call it once Done is closed.
func (f *Flight) Answer() *Answer { return f.result }

// Registry holds the automatic-key requests in flight, by fingerprint, and
// the unanswered keys in its RetryMemory. Create it with NewRegistry; the
// zero value is not usable. It is safe for concurrent use.
type Registry struct {
	mu         sync.Mutex
	inflight   map[string][]*Flight // fingerprint -> leaders in flight
	unanswered RetryMemory          // fingerprint -> key
	changed    chan struct{}        // closed and replaced when a caller leaves or a flight ends
	grace      time.Duration
	board      Board // nil: this replica alone
	ids        atomic.Uint64
}

// NewRegistry returns an empty Registry that keeps unanswered keys in
// unanswered (which must not be nil) and makes an identical request wait
// up to grace for an earlier caller to leave (DefaultGrace in khproxy).
func NewRegistry(unanswered RetryMemory, grace time.Duration) *Registry {
	return &Registry{
		inflight:   map[string][]*Flight{},
		unanswered: unanswered,
		changed:    make(chan struct{}),
		grace:      grace,
	}
}

// Share makes reg share its flights with other replicas through b. Call it
// before the first Join.
func (reg *Registry) Share(b Board) { reg.board = b }

// Fingerprint identifies "the same request" for a caller's retry: same
// method, request-target and body (bodyHash, the body's hash as signed).
func Fingerprint(method, target, bodyHash string) string {
	sum := sha256.Sum256([]byte(method + "\n" + target + "\n" + bodyHash))
	return hex.EncodeToString(sum[:])
}

// Join returns the flight for a request with fingerprint fp. leader is true
// when the caller must send the request itself, with f.Key(): the key of an
// unanswered earlier request if there is one, else key; it then calls
// Leave if its caller goes away and Finish once the answer is written.
// Otherwise f is an abandoned identical request that the caller has
// claimed: it waits for f.Done(), or calls Unclaim if it gives up. err is
// ctx's error when ctx ended while waiting.
func (reg *Registry) Join(ctx context.Context, fp, key string) (f *Flight, leader bool, err error) {
	start := time.Now()
	patience := reg.grace
	waited := false
	for {
		reg.mu.Lock()
		f := reg.claimLocked(fp)
		reg.mu.Unlock()
		if f != nil {
			if reg.board == nil || reg.board.MarkClaimed(fp, f.id) {
				return f, false, nil
			}
			// Another replica's retry claimed it first: it keeps
			// f.claimed, so that f's key goes to that retry alone.
			continue
		}
		busy := false
		if reg.board != nil {
			var k string
			var ok bool
			if k, ok, busy = reg.board.Claim(fp); ok {
				return reg.Start(fp, k), true, nil
			}
		}
		reg.mu.Lock()
		if k, ok := reg.takeUnanswered(fp); ok {
			key, waited = k, true
		}
		if waited || (len(reg.inflight[fp]) == 0 && !busy) {
			f := reg.startLocked(fp, key)
			reg.mu.Unlock()
			reg.register(f)
			return f, true, nil
		}
		changed := reg.changed
		reg.mu.Unlock()
		step := time.Until(start.Add(patience))
		if busy {
			// Another replica's entry: its caller's leaving is not
			// broadcast, so look again soon; and its replica may have
			// crashed, which shows only once its heartbeat runs out.
			patience = max(patience, reg.board.Lifetime()+2*sharedPoll)
			step = min(time.Until(start.Add(patience)), sharedPoll)
		}
		if step <= 0 {
			waited = true
			continue
		}
		t := time.NewTimer(step)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.Stop()
		if err != nil {
			return nil, false, err
		}
	}
}

// register puts f on the board, if there is one.
func (reg *Registry) register(f *Flight) {
	if reg.board != nil {
		reg.board.Register(f.fp, f.id, f.key)
	}
}

// claimLocked claims an abandoned, unclaimed flight for fp, if there is one.
func (reg *Registry) claimLocked(fp string) *Flight {
	for _, f := range reg.inflight[fp] {
		if f.callerGone && !f.claimed {
			f.claimed = true
			return f
		}
	}
	return nil
}

// Start makes a leader that sends its request with key, without waiting:
// for a follower whose claimed flight ended without an Answer, which asks
// the API again with that flight's key.
func (reg *Registry) Start(fp, key string) *Flight {
	reg.mu.Lock()
	f := reg.startLocked(fp, key)
	reg.mu.Unlock()
	reg.register(f)
	return f
}

func (reg *Registry) startLocked(fp, key string) *Flight {
	id := strconv.FormatUint(reg.ids.Add(1), 36)
	f := &Flight{fp: fp, id: id, key: key, done: make(chan struct{})}
	reg.inflight[fp] = append(reg.inflight[fp], f)
	return f
}

// Leave records that f's caller went away before its answer: f may now be
// claimed by the caller's retry.
func (reg *Registry) Leave(f *Flight) {
	reg.mu.Lock()
	f.callerGone = true
	reg.broadcastLocked()
	reg.mu.Unlock()
	if reg.board != nil {
		reg.board.Leave(f.fp, f.id)
	}
}

// Unclaim gives f up: the retry that claimed it went away too. If f has
// ended meanwhile, its key is kept for the next retry, as Finish would have.
func (reg *Registry) Unclaim(f *Flight) {
	if reg.board != nil {
		reg.board.Unclaim(f.fp, f.id)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	f.claimed = false
	if f.finished && !f.delivered {
		reg.keepUnanswered(f.fp, f.key)
	}
	reg.broadcastLocked()
}

// Finish ends a leader's flight, with whether a settling answer reached its
// caller and that answer (nil when there is none to share: not settling,
// or not kept whole), and closes
// f.Done(). Unless the answer was delivered, its key is kept for the
// caller's retry; a retry that claimed f takes over that duty.
func (reg *Registry) Finish(f *Flight, delivered bool, result *Answer) {
	elsewhere, kept := false, false
	if reg.board != nil {
		reg.mu.Lock()
		keep := !delivered && !f.claimed
		reg.mu.Unlock()
		elsewhere, kept = reg.board.Finish(f.fp, f.id, f.key, keep)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	leaders := reg.inflight[f.fp]
	for i, g := range leaders {
		if g == f {
			leaders = append(leaders[:i], leaders[i+1:]...)
			break
		}
	}
	if len(leaders) == 0 {
		delete(reg.inflight, f.fp)
	} else {
		reg.inflight[f.fp] = leaders
	}
	if elsewhere {
		// A retry on another replica took the key over.
		f.claimed = true
	}
	if !delivered && !f.claimed && !kept {
		// Kept already, the key might be taken by a retry by now:
		// keeping it again would hand it to a second purchase.
		reg.keepUnanswered(f.fp, f.key)
	}
	f.finished, f.delivered, f.result = true, delivered, result
	close(f.done)
	reg.broadcastLocked()
}

// Keep keeps f's key for the next retry: the answer a claiming retry was
// given did not reach its caller either.
func (reg *Registry) Keep(f *Flight) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	reg.keepUnanswered(f.fp, f.key)
}

// takeUnanswered and keepUnanswered are the only uses of the unanswered keys.
// Called with reg.mu held.
func (reg *Registry) takeUnanswered(fp string) (string, bool) {
	key, ok := reg.unanswered.Get(fp)
	if ok {
		reg.unanswered.Forget(fp, key)
	}
	return key, ok
}

func (reg *Registry) keepUnanswered(fp, key string) { reg.unanswered.Add(fp, key) }

func (reg *Registry) broadcastLocked() {
	close(reg.changed)
	reg.changed = make(chan struct{})
}
