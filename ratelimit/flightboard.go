package ratelimit

import (
	"context"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"time"
)

// FlightEntry is one replica's in-flight automatic-key request as a
// FlightStore holds it: the body fingerprint, the flight's id (unique
// across replicas), its Idempotency-Key, the owning replica and whether
// its caller went away.
type FlightEntry struct {
	FP, ID, Key, Owner string
	Gone               bool
}

// FlightStore is the board of in-flight automatic-key requests shared by
// every replica (redisstore). Each entry lives while its owner refreshes it
// within ttl; an entry past that counts as abandoned (its replica crashed)
// and is kept for keep at most. Errors mean the store cannot be reached;
// implementations are safe for concurrent use.
type FlightStore interface {
	// RegisterFlight puts e on the board.
	RegisterFlight(ctx context.Context, e FlightEntry, ttl, keep time.Duration) error
	// RefreshFlights extends the life of es by ttl, putting back those
	// the store lost (unclaimed).
	RefreshFlights(ctx context.Context, es []FlightEntry, ttl, keep time.Duration) error
	// LeaveFlight marks the caller of flight id gone.
	LeaveFlight(ctx context.Context, fp, id string) error
	// ClaimFlight claims an unclaimed entry of fp not owned by owner whose
	// caller is gone or whose life ran out, and returns its key; busy
	// reports a live entry of another owner that was not claimed.
	ClaimFlight(ctx context.Context, fp, owner string) (key string, ok, busy bool, err error)
	// MarkFlightClaimed claims flight id for its owner's own retry; false
	// when it was claimed already.
	MarkFlightClaimed(ctx context.Context, fp, id string) (bool, error)
	// UnclaimFlight gives the claim of flight id up.
	UnclaimFlight(ctx context.Context, fp, id string) error
	// FinishFlight removes flight id and reports whether it was claimed;
	// unless it was, and when keepFor is positive, it keeps key for fp in
	// the retry memory (KeyStore) for keepFor, in the same step.
	FinishFlight(ctx context.Context, fp, id, key string, keepFor time.Duration) (claimed bool, err error)
}

// Default heartbeat of a FlightBoard: each replica refreshes its entries
// every DefaultHeartbeat (one Redis call for all, only while it has any);
// an entry not refreshed for DefaultFlightTTL counts as abandoned by a
// crashed replica. A retry meeting another replica's identical request
// waits up to that long before it is taken for a purchase of its own, so
// the TTL is short; five heartbeats fit in it, so that a replica whose
// refresh is late by a few hundred milliseconds is not taken for dead.
const (
	DefaultHeartbeat = 200 * time.Millisecond
	DefaultFlightTTL = time.Second
)

// DefaultOutageHold is how long a retry's Claim waits for an unreachable
// store to answer again before the replica goes on alone: a Redis restart
// or failover of a few seconds then costs the retry that delay instead of
// its earlier request's key (a second order). Longer outages fall back to
// each replica's local state, as the rest of the shared state does.
const DefaultOutageHold = 3 * time.Second

// outagePoll is how often a Claim held by an outage tries again; the
// Outage itself lets one probe through per DefaultProbeEvery.
const outagePoll = 100 * time.Millisecond

// FlightBoard puts this replica's in-flight automatic-key requests on a
// shared FlightStore and refreshes them (a heartbeat), so that a caller's
// retry at another replica can find its abandoned request (package
// proxy/flight says the rules; FlightBoard implements its Board). While
// the store is unreachable, every method answers as if the board were
// empty and the outage is reported as for the RetryMemory; once it is
// back, this replica's entries are registered again. Create it with
// NewFlightBoard and stop its heartbeat with Close; it is safe for
// concurrent use.
type FlightBoard struct {
	// OutageHold is how long into an outage Claim still waits for the
	// store to answer again (DefaultOutageHold from NewFlightBoard; 0:
	// not at all). Set it before the board is used.
	OutageHold time.Duration

	store  FlightStore
	outage *Outage
	owner  string
	every  time.Duration
	ttl    time.Duration
	keep   time.Duration
	// settle is how long after an outage an empty answer of the store is
	// not trusted: the other replicas put their entries back only once
	// they notice the store is back (a probe a second, then a heartbeat).
	settle    time.Duration
	recovered atomic.Int64 // unix nanoseconds of the last outage's end

	mu    sync.Mutex
	local map[string]FlightEntry // by ID: this replica's entries

	stop chan struct{}
	done chan struct{}
}

// NewFlightBoard returns a board on store, with entries refreshed every
// heartbeat and abandoned after ttl without one (0: DefaultHeartbeat,
// DefaultFlightTTL), kept for keep at most (the idempotency window).
// outage tracks the store's reachability (nil: a new one whose messages
// are discarded). It starts the heartbeat.
func NewFlightBoard(store FlightStore, outage *Outage, heartbeat, ttl, keep time.Duration) *FlightBoard {
	if heartbeat <= 0 {
		heartbeat = DefaultHeartbeat
	}
	if ttl <= 0 {
		ttl = DefaultFlightTTL
	}
	if outage == nil {
		outage, _ = NewOutage(nil, nil) // registers nothing: cannot fail
	}
	b := &FlightBoard{
		OutageHold: DefaultOutageHold,
		store:      store, outage: outage, owner: rand.Text(),
		every: heartbeat, ttl: ttl, keep: max(keep, ttl),
		settle: DefaultProbeEvery + 2*heartbeat,
		local:  map[string]FlightEntry{},
		stop:   make(chan struct{}), done: make(chan struct{}),
	}
	outage.OnRecover(func() {
		b.recovered.Store(time.Now().UnixNano())
		b.reregister()
	})
	go b.beat()
	return b
}

// Close stops the heartbeat; this replica's entries then run out after
// the ttl, as a crashed replica's do.
func (b *FlightBoard) Close() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
}

func (b *FlightBoard) beat() {
	defer close(b.done)
	t := time.NewTicker(b.every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.refresh()
	}
}

// refresh extends the life of this replica's entries, holding b.mu: a
// flight that finishes meanwhile must not be put back after its removal.
func (b *FlightBoard) refresh() {
	b.mu.Lock()
	defer b.mu.Unlock()
	es := b.entriesLocked()
	if len(es) == 0 {
		return
	}
	b.outage.try(context.Background(), func(ctx context.Context) error {
		return b.store.RefreshFlights(ctx, es, b.ttl, b.keep)
	})
}

func (b *FlightBoard) entries() []FlightEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.entriesLocked()
}

func (b *FlightBoard) entriesLocked() []FlightEntry {
	es := make([]FlightEntry, 0, len(b.local))
	for _, e := range b.local {
		es = append(es, e)
	}
	return es
}

// reregister puts this replica's entries on the board again after an
// outage: Redis may have lost them.
func (b *FlightBoard) reregister() {
	for _, e := range b.entries() {
		if !b.outage.try(context.Background(), func(ctx context.Context) error {
			return b.store.RegisterFlight(ctx, e, b.ttl, b.keep)
		}) {
			return
		}
	}
}

// Lifetime implements flight.Board: the ttl.
func (b *FlightBoard) Lifetime() time.Duration { return b.ttl }

// id names a local flight on the board: unique across replicas.
func (b *FlightBoard) id(local string) string { return b.owner + "/" + local }

// Register implements flight.Board.
func (b *FlightBoard) Register(fp, id, key string) {
	e := FlightEntry{FP: fp, ID: b.id(id), Key: key, Owner: b.owner}
	b.mu.Lock()
	b.local[e.ID] = e
	b.mu.Unlock()
	b.outage.try(context.Background(), func(ctx context.Context) error {
		return b.store.RegisterFlight(ctx, e, b.ttl, b.keep)
	})
}

// Leave implements flight.Board.
func (b *FlightBoard) Leave(fp, id string) {
	id = b.id(id)
	b.mu.Lock()
	if e, ok := b.local[id]; ok {
		e.Gone = true
		b.local[id] = e
	}
	b.mu.Unlock()
	b.outage.try(context.Background(), func(ctx context.Context) error {
		return b.store.LeaveFlight(ctx, fp, id)
	})
}

// Claim implements flight.Board. While the store is unreachable it waits
// for it to answer again (until ctx ends), up to OutageHold after the
// outage began, then answers as if the board were empty. Shortly after an outage, an empty answer
// counts as busy: another replica may not have put its entries back yet,
// and the caller then looks again for as long as it would for a live one.
func (b *FlightBoard) Claim(ctx context.Context, fp string) (key string, ok, busy bool) {
	deadline := time.Now().Add(b.OutageHold)
	if since := b.outage.Since(); !since.IsZero() {
		// Only the first OutageHold of an outage is waited out: a
		// long one must not delay every request by as much.
		deadline = since.Add(b.OutageHold)
	}
	for {
		wasDown := b.outage.Down()
		if b.outage.try(ctx, func(ctx context.Context) (err error) {
			key, ok, busy, err = b.store.ClaimFlight(ctx, fp, b.owner)
			return err
		}) {
			if wasDown {
				// This call ended the outage: OnRecover's note of it
				// may come later.
				b.recovered.Store(time.Now().UnixNano())
			}
			if !ok && time.Since(time.Unix(0, b.recovered.Load())) < b.settle {
				busy = true
			}
			return key, ok, busy
		}
		wait := min(outagePoll, time.Until(deadline))
		if wait <= 0 {
			return "", false, false
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return "", false, false
		}
	}
}

// MarkClaimed implements flight.Board.
func (b *FlightBoard) MarkClaimed(fp, id string) bool {
	mine := true
	b.outage.try(context.Background(), func(ctx context.Context) (err error) {
		mine, err = b.store.MarkFlightClaimed(ctx, fp, b.id(id))
		if err != nil {
			mine = true
		}
		return err
	})
	return mine
}

// Unclaim implements flight.Board.
func (b *FlightBoard) Unclaim(fp, id string) {
	b.outage.try(context.Background(), func(ctx context.Context) error {
		return b.store.UnclaimFlight(ctx, fp, b.id(id))
	})
}

// Finish implements flight.Board; the key is kept for the idempotency
// window given to NewFlightBoard.
func (b *FlightBoard) Finish(fp, id, key string, keep bool) (claimed, kept bool) {
	id = b.id(id)
	b.mu.Lock()
	delete(b.local, id)
	b.mu.Unlock()
	var keepFor time.Duration
	if keep {
		keepFor = b.keep
	}
	ok := b.outage.try(context.Background(), func(ctx context.Context) (err error) {
		claimed, err = b.store.FinishFlight(ctx, fp, id, key, keepFor)
		return err
	})
	return claimed, ok && keep && !claimed
}
