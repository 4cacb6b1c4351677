package guard

import (
	"context"
	"sync"
	"time"
)

// Store keeps the orders of the current periods, by Idempotency-Key: when
// each was counted and what it costs (its price while in flight, the
// answer's amount once settled). NewMemory keeps them in this process;
// package ratelimit/redisstore keeps them in Redis, shared by replicas.
// Implementations are safe for concurrent use, and every method is atomic:
// two replicas reserving at once cannot both take the last place.
//
// Every method fails only when the store cannot be reached or read; the
// guard then refuses orders (it fails closed).
type Store interface {
	// Reserve counts the order o under limits, unless its key is already
	// known (a retry: nothing changes) or a limit would be exceeded
	// (nothing changes either). An order whose Cents is negative (it
	// could not be priced) is only looked up: Known, or refused with
	// RuleUnpriced.
	Reserve(ctx context.Context, o Order, l Limits) (Decision, error)
	// Settle sets the cost of the order with key to cents: the API's
	// answer. It does nothing when the key is unknown.
	Settle(ctx context.Context, key string, cents int64) error
	// Release forgets the order with key: it was never sent.
	Release(ctx context.Context, key string) error
	// Usage returns the orders and spend counted in the periods ending at
	// now.
	Usage(ctx context.Context, now time.Time, l Limits) (Usage, error)
}

// Order is a new order to count: its Idempotency-Key, when it is counted
// and its price in hundredths.
type Order struct {
	Key   string
	Time  time.Time
	Cents int64
}

// Limits are the periods' limits. An Orders or Spend of zero (or less)
// with a zero period means no limit of that kind. Keep is how long a key
// is known after it was counted: at least the longer period.
type Limits struct {
	Orders   int
	OrderPer time.Duration
	Spend    int64 // hundredths
	SpendPer time.Duration
	Keep     time.Duration
}

// keep returns how long entries are kept: Keep, or the longer period.
func (l Limits) keep() time.Duration { return max(l.Keep, l.OrderPer, l.SpendPer) }

// Rule names of a Decision's refusal.
const (
	RuleNotAllowed  = "not_allowed"
	RuleOrderLimit  = "order_limit"
	RuleSpendLimit  = "spend_limit"
	RuleUnavailable = "guard_unavailable"
	// RuleUnpriced is Reserve's refusal of an unpriced order that is not
	// a retry; the guard answers it with the reason the price is missing.
	RuleUnpriced = "unpriced"
)

// Decision is Reserve's answer.
type Decision struct {
	// Known: the key was counted before; the order is a retry and was not
	// counted again.
	Known bool
	// Refused is RuleOrderLimit, RuleSpendLimit or RuleUnpriced, "" when
	// the order was counted (or Known).
	Refused string
	// RetryAfter is, for RuleOrderLimit, when the oldest order of the
	// period leaves it.
	RetryAfter time.Duration
	// Usage is the periods' usage after the decision.
	Usage
}

// Usage is what the periods hold.
type Usage struct {
	Orders int   // orders counted in the order period
	Spent  int64 // hundredths counted in the spend period
}

// memory is the in-process Store.
type memory struct {
	mu      sync.Mutex
	entries map[string]entry
}

type entry struct {
	at    time.Time
	cents int64
}

// NewMemory returns a Store kept in this process, for one khproxy.
func NewMemory() Store { return &memory{entries: map[string]entry{}} }

// usageLocked drops entries past keep and sums the periods; oldest is the
// time of the oldest order in the order period.
func (m *memory) usageLocked(now time.Time, l Limits) (u Usage, oldest time.Time) {
	for k, e := range m.entries {
		age := now.Sub(e.at)
		if age >= l.keep() {
			delete(m.entries, k)
			continue
		}
		if l.OrderPer > 0 && age < l.OrderPer {
			u.Orders++
			if oldest.IsZero() || e.at.Before(oldest) {
				oldest = e.at
			}
		}
		if l.SpendPer > 0 && age < l.SpendPer {
			u.Spent += e.cents
		}
	}
	return u, oldest
}

func (m *memory) Reserve(_ context.Context, o Order, l Limits) (Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, oldest := m.usageLocked(o.Time, l)
	d := Decision{Usage: u}
	switch _, known := m.entries[o.Key]; {
	case known:
		d.Known = true
	case o.Cents < 0:
		d.Refused = RuleUnpriced
	case l.OrderPer > 0 && u.Orders >= l.Orders:
		d.Refused, d.RetryAfter = RuleOrderLimit, oldest.Add(l.OrderPer).Sub(o.Time)
	case l.SpendPer > 0 && u.Spent+o.Cents > l.Spend:
		d.Refused = RuleSpendLimit
	default:
		m.entries[o.Key] = entry{at: o.Time, cents: o.Cents}
		if l.OrderPer > 0 {
			d.Orders++
		}
		if l.SpendPer > 0 {
			d.Spent += o.Cents
		}
	}
	return d, nil
}

func (m *memory) Settle(_ context.Context, key string, cents int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[key]; ok {
		e.cents = cents
		m.entries[key] = e
	}
	return nil
}

func (m *memory) Release(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, key)
	return nil
}

func (m *memory) Usage(_ context.Context, now time.Time, l Limits) (Usage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, _ := m.usageLocked(now, l)
	return u, nil
}
