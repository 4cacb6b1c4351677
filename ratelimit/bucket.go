// Package ratelimit paces khproxy's requests to the API's rate limit and
// keeps the state that several khproxy replicas may share: the key's token
// bucket and the retry memory (the Idempotency-Key of requests whose answer
// did not reach their caller).
//
// A Bucket is one API key's token bucket. Memory is the in-process one;
// package ratelimit/redisstore shares one through Redis. Both run the same
// algorithm, GCRA (the "generic cell rate algorithm", a token bucket kept as
// one timestamp), so they answer alike; the conformance suite in
// ratelimittest checks that. A Limiter puts callers in line on a Bucket,
// falls back to a local bucket while the shared one is unreachable, and
// exports metrics.
//
// golang.org/x/time/rate is not used: it cannot pause longer than
// burst/rate (an API 429 may ask for more), cannot lower its tokens to what
// the API reports, and its Cancel gives nothing back once a later
// reservation exists, so a caller that leaves from the middle of the line
// would not free its place.
//
// The package knows nothing of HTTP servers, proxies or Redis.
package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Limit is a token bucket: one token every Every, at most Burst tokens. A
// bucket starts full. The zero Limit is invalid; use Check.
type Limit struct {
	Every time.Duration
	Burst int
}

// Check reports whether l can be used.
func (l Limit) Check() error {
	if l.Every <= 0 {
		return fmt.Errorf("ratelimit: Every must be positive, got %s", l.Every)
	}
	if l.Burst < 1 {
		return fmt.Errorf("ratelimit: Burst must be at least 1, got %d", l.Burst)
	}
	return nil
}

// String formats l like "1 per 1s, burst 20".
func (l Limit) String() string { return fmt.Sprintf("1 per %s, burst %d", l.Every, l.Burst) }

// Reservation is a Bucket's answer to Reserve.
type Reservation struct {
	// OK: a token is reserved for the caller, usable after Delay. Not OK:
	// nothing was taken, and a token would be free only after Delay, which
	// is more than the caller accepted to wait.
	OK    bool
	Delay time.Duration
	// Gen is the bucket's generation when the token was reserved. A pause
	// starts a new generation and voids every reservation not yet used.
	Gen int64
}

// Bucket is one API key's token bucket. Errors only come from a shared
// bucket that cannot be reached; implementations are safe for concurrent
// use.
type Bucket interface {
	// Reserve takes one token if it is free within maxWait (0: only a token
	// free now).
	Reserve(ctx context.Context, maxWait time.Duration) (Reservation, error)
	// Cancel gives back the token of an OK reservation that will not be
	// used. A reservation of an older generation is not given back.
	Cancel(ctx context.Context, r Reservation) error
	// Valid reports whether r's generation is still the bucket's.
	Valid(ctx context.Context, r Reservation) (bool, error)
	// Pause stops handing out tokens for d, as the API's 429 Retry-After
	// asks: from then on one token is free and the bucket refills. Every
	// reservation not yet used is voided (a new generation) unless an
	// earlier pause already lasts as long.
	Pause(ctx context.Context, d time.Duration) error
	// Sync lowers the bucket to what the API reported: remaining tokens,
	// and the time until the bucket is full (0: unknown). It never raises
	// the bucket.
	Sync(ctx context.Context, remaining int, full time.Duration) error
	// Tokens returns the tokens free now; negative when tokens are already
	// promised to callers waiting in line.
	Tokens(ctx context.Context) (float64, error)
}

// gcra is the bucket state: tat ("theoretical arrival time") is when the
// bucket will be full again; the tokens free at t are
// Burst - (tat - t) / Every. Redis runs the same arithmetic in Lua
// (redisstore/script.go): change both together.
type gcra struct {
	tat         time.Time
	gen         int64
	pausedUntil time.Time
}

func (s *gcra) reserve(l Limit, now time.Time, maxWait time.Duration) Reservation {
	next := later(s.tat, now).Add(l.Every)
	at := next.Add(-time.Duration(l.Burst) * l.Every)
	wait := max(at.Sub(now), 0)
	if wait > maxWait {
		return Reservation{Delay: wait, Gen: s.gen}
	}
	s.tat = next
	return Reservation{OK: true, Delay: wait, Gen: s.gen}
}

func (s *gcra) cancel(l Limit, now time.Time, r Reservation) {
	if !r.OK || r.Gen != s.gen {
		return
	}
	s.tat = later(s.tat.Add(-l.Every), now)
}

func (s *gcra) pause(l Limit, now time.Time, d time.Duration) {
	until := now.Add(d)
	if !until.After(s.pausedUntil) {
		return
	}
	s.pausedUntil = until
	s.tat = until.Add(time.Duration(l.Burst-1) * l.Every)
	s.gen++
}

func (s *gcra) sync(l Limit, now time.Time, remaining int, full time.Duration) {
	owed := time.Duration(l.Burst-remaining) * l.Every
	if full > time.Duration(l.Burst)*l.Every {
		// Longer than our bucket can take to fill: the API counts in
		// another way (or another unit); its remaining count still holds.
		full = 0
	}
	s.tat = later(s.tat, now.Add(max(owed, full)))
}

func (s *gcra) tokens(l Limit, now time.Time) float64 {
	return float64(l.Burst) - float64(max(s.tat.Sub(now), 0))/float64(l.Every)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Memory is an in-process Bucket. Create it with NewMemory; it is safe for
// concurrent use and never returns an error.
type Memory struct {
	limit Limit
	now   func() time.Time
	mu    sync.Mutex
	s     gcra
}

var _ Bucket = (*Memory)(nil)

// NewMemory returns a full bucket for l; now is the clock (nil: time.Now).
// It returns an error when l is invalid.
func NewMemory(l Limit, now func() time.Time) (*Memory, error) {
	if err := l.Check(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Memory{limit: l, now: now}, nil
}

// Reserve implements Bucket.
func (m *Memory) Reserve(_ context.Context, maxWait time.Duration) (Reservation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.s.reserve(m.limit, m.now(), maxWait), nil
}

// Cancel implements Bucket.
func (m *Memory) Cancel(_ context.Context, r Reservation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s.cancel(m.limit, m.now(), r)
	return nil
}

// Valid implements Bucket.
func (m *Memory) Valid(_ context.Context, r Reservation) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return r.Gen == m.s.gen, nil
}

// Pause implements Bucket.
func (m *Memory) Pause(_ context.Context, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s.pause(m.limit, m.now(), d)
	return nil
}

// Sync implements Bucket.
func (m *Memory) Sync(_ context.Context, remaining int, full time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s.sync(m.limit, m.now(), remaining, full)
	return nil
}

// Tokens implements Bucket.
func (m *Memory) Tokens(context.Context) (float64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.s.tokens(m.limit, m.now()), nil
}
