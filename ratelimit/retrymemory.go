package ratelimit

import (
	"context"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// KeyStore is a retry memory shared with other replicas (redisstore):
// request fingerprint -> Idempotency-Key, each entry expiring after its
// ttl. Errors mean the store cannot be reached; implementations are safe
// for concurrent use.
type KeyStore interface {
	// Get returns the key remembered for fp; ok is false when none is.
	Get(ctx context.Context, fp string) (key string, ok bool, err error)
	// Put remembers key for fp for ttl, replacing any other key.
	Put(ctx context.Context, fp, key string, ttl time.Duration) error
	// PutIfAbsent remembers key for fp for ttl unless fp has a key already.
	PutIfAbsent(ctx context.Context, fp, key string, ttl time.Duration) error
	// Forget drops fp's entry if its key is key.
	Forget(ctx context.Context, fp, key string) error
}

// MaxLocalEntries bounds the keys a RetryMemory keeps in process; the
// oldest go first.
const MaxLocalEntries = 10000

// RetryMemory remembers, for a window, the Idempotency-Key of requests
// whose answer did not reach their caller, so that the caller's retry
// reuses it. With a KeyStore the memory is shared by every replica; while
// the store is unreachable, entries are kept in process and written to the
// store when it is back. Create it with NewRetryMemory; it is safe for
// concurrent use. Its methods never fail.
type RetryMemory struct {
	window time.Duration
	shared KeyStore
	outage *Outage
	local  *expirable.LRU[string, localEntry]
}

type localEntry struct {
	key     string
	expires time.Time
}

// NewRetryMemory returns a memory keeping entries for window (at most
// MaxLocalEntries in process). shared may be nil (in process only); with
// it, outage tracks its reachability (nil: a new one, whose messages and
// metrics are discarded).
func NewRetryMemory(window time.Duration, shared KeyStore, outage *Outage) *RetryMemory {
	m := &RetryMemory{
		window: window,
		shared: shared,
		outage: outage,
		local:  expirable.NewLRU[string, localEntry](MaxLocalEntries, nil, window),
	}
	if shared != nil {
		if m.outage == nil {
			m.outage, _ = NewOutage(nil, nil) // registers nothing: cannot fail
		}
		m.outage.OnRecover(m.flush)
	}
	return m
}

// Get returns the key remembered for fp. While the shared store answers,
// its answer counts, then the entries kept in process during an outage.
func (m *RetryMemory) Get(fp string) (string, bool) {
	if m.shared != nil {
		var key string
		var ok bool
		if m.outage.try(context.Background(), func(ctx context.Context) (err error) {
			key, ok, err = m.shared.Get(ctx, fp)
			return err
		}) && ok {
			return key, true
		}
	}
	e, ok := m.local.Get(fp)
	return e.key, ok
}

// Add remembers key for fp for the window.
func (m *RetryMemory) Add(fp, key string) {
	if m.shared != nil && m.outage.try(context.Background(), func(ctx context.Context) error {
		return m.shared.Put(ctx, fp, key, m.window)
	}) {
		// An entry kept during an outage must not outlive this one.
		m.local.Remove(fp)
		return
	}
	m.local.Add(fp, localEntry{key: key, expires: time.Now().Add(m.window)})
}

// Forget drops fp's entry if its key is key, in the shared store and in
// process.
func (m *RetryMemory) Forget(fp, key string) {
	if m.shared != nil {
		m.outage.try(context.Background(), func(ctx context.Context) error {
			return m.shared.Forget(ctx, fp, key)
		})
	}
	if e, ok := m.local.Peek(fp); ok && e.key == key {
		m.local.Remove(fp)
	}
}

// flush writes the entries kept in process during an outage to the shared
// store, without replacing what other replicas wrote there meanwhile.
func (m *RetryMemory) flush() {
	for _, fp := range m.local.Keys() {
		e, ok := m.local.Peek(fp)
		ttl := time.Until(e.expires)
		if !ok || ttl <= 0 {
			continue
		}
		if !m.outage.try(context.Background(), func(ctx context.Context) error {
			return m.shared.PutIfAbsent(ctx, fp, e.key, ttl)
		}) {
			return // down again; the next recovery flushes
		}
		if cur, ok := m.local.Peek(fp); ok && cur == e {
			m.local.Remove(fp)
		}
	}
}
