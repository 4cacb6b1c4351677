// Package guardtest is the conformance suite every guard.Store passes: the
// in-process one and the Redis one, so that a limit means the same on one
// khproxy and on many.
package guardtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"khproxy/guard"
)

// Run runs the suite on stores made by newStore, one fresh empty store per
// subtest.
func Run(t *testing.T, newStore func(t *testing.T) guard.Store) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	orders := guard.Limits{Orders: 2, OrderPer: time.Hour, Keep: 10 * time.Minute}
	spend := guard.Limits{Spend: 1000, SpendPer: 24 * time.Hour}

	reserve := func(t *testing.T, s guard.Store, key string, at time.Time, cents int64, l guard.Limits) guard.Decision {
		t.Helper()
		d, err := s.Reserve(ctx, guard.Order{Key: key, Time: at, Cents: cents}, l)
		if err != nil {
			t.Fatalf("Reserve(%s): %v", key, err)
		}
		return d
	}

	t.Run("order limit counts new keys and says when the next fits", func(t *testing.T) {
		s := newStore(t)
		for i, key := range []string{"a", "b"} {
			if d := reserve(t, s, key, t0.Add(time.Duration(i)*time.Minute), 0, orders); d.Refused != "" || d.Known || d.Orders != i+1 {
				t.Fatalf("%s: %+v, want counted as order %d", key, d, i+1)
			}
		}
		d := reserve(t, s, "c", t0.Add(10*time.Minute), 0, orders)
		if d.Refused != guard.RuleOrderLimit || d.RetryAfter != 50*time.Minute {
			t.Fatalf("third order: %+v, want order_limit with RetryAfter 50m (the first leaves the hour at 13:00)", d)
		}
		if d := reserve(t, s, "c", t0.Add(time.Hour), 0, orders); d.Refused != "" {
			t.Fatalf("once the first left the period: %+v, want counted", d)
		}
	})
	t.Run("a counted key is a retry, even at the limit", func(t *testing.T) {
		s := newStore(t)
		reserve(t, s, "a", t0, 0, orders)
		reserve(t, s, "b", t0, 0, orders)
		if d := reserve(t, s, "a", t0.Add(time.Minute), 0, orders); !d.Known || d.Refused != "" || d.Orders != 2 {
			t.Fatalf("retry of a: %+v, want Known, not refused, still 2 orders", d)
		}
	})
	t.Run("an unpriced order is only looked up", func(t *testing.T) {
		s := newStore(t)
		reserve(t, s, "a", t0, 600, spend)
		if d := reserve(t, s, "a", t0, -1, spend); !d.Known || d.Refused != "" {
			t.Fatalf("unpriced retry of a: %+v, want Known", d)
		}
		if d := reserve(t, s, "b", t0, -1, spend); d.Known || d.Refused != guard.RuleUnpriced {
			t.Fatalf("unpriced new order: %+v, want refused unpriced", d)
		}
		if u, err := s.Usage(ctx, t0, spend); err != nil || u.Spent != 600 {
			t.Fatalf("Usage = %+v, %v; want 600 spent, nothing of the unpriced", u, err)
		}
	})
	t.Run("a key is known for Keep after its period", func(t *testing.T) {
		s := newStore(t)
		l := guard.Limits{Orders: 1, OrderPer: time.Minute, Keep: 10 * time.Minute}
		reserve(t, s, "a", t0, 0, l)
		if d := reserve(t, s, "a", t0.Add(9*time.Minute), 0, l); !d.Known || d.Orders != 0 {
			t.Fatalf("retry after the period, within Keep: %+v, want Known and 0 orders in the period", d)
		}
		if d := reserve(t, s, "a", t0.Add(10*time.Minute), 0, l); d.Known {
			t.Fatalf("after Keep: %+v, want a new order", d)
		}
	})
	t.Run("release frees the place", func(t *testing.T) {
		s := newStore(t)
		reserve(t, s, "a", t0, 0, orders)
		reserve(t, s, "b", t0, 0, orders)
		if err := s.Release(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if d := reserve(t, s, "c", t0, 0, orders); d.Refused != "" {
			t.Fatalf("after release: %+v, want counted", d)
		}
		if d := reserve(t, s, "a", t0, 0, orders); d.Known {
			t.Fatalf("released key: %+v, want not known", d)
		}
	})
	t.Run("spend limit counts prices and settled amounts", func(t *testing.T) {
		s := newStore(t)
		if d := reserve(t, s, "a", t0, 600, spend); d.Refused != "" || d.Spent != 600 {
			t.Fatalf("a: %+v, want counted, 600 spent", d)
		}
		if d := reserve(t, s, "b", t0, 401, spend); d.Refused != guard.RuleSpendLimit || d.Spent != 600 {
			t.Fatalf("b over by 1: %+v, want spend_limit with 600 spent", d)
		}
		if err := s.Settle(ctx, "a", 500); err != nil {
			t.Fatal(err)
		}
		if d := reserve(t, s, "b", t0, 500, spend); d.Refused != "" || d.Spent != 1000 {
			t.Fatalf("b exactly at the limit after a settled lower: %+v, want counted, 1000 spent", d)
		}
		if err := s.Settle(ctx, "nobody", 5); err != nil {
			t.Fatal(err)
		}
		u, err := s.Usage(ctx, t0, spend)
		if err != nil || u.Spent != 1000 {
			t.Fatalf("Usage = %+v, %v; want 1000 spent (settling an unknown key adds nothing)", u, err)
		}
		u, err = s.Usage(ctx, t0.Add(24*time.Hour), spend)
		if err != nil || u.Spent != 0 {
			t.Fatalf("Usage a day later = %+v, %v; want 0", u, err)
		}
	})
	t.Run("concurrent reservations take exactly the limit", func(t *testing.T) {
		s := newStore(t)
		l := guard.Limits{Orders: 5, OrderPer: time.Hour, Spend: 700, SpendPer: time.Hour}
		var counted atomic.Int64
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				d, err := s.Reserve(ctx, guard.Order{Key: fmt.Sprint("k", i), Time: t0, Cents: 100}, l)
				if err != nil {
					t.Error(err)
				}
				if d.Refused == "" && !d.Known {
					counted.Add(1)
				}
			})
		}
		wg.Wait()
		if got := counted.Load(); got != 5 {
			t.Fatalf("%d orders counted, want 5", got)
		}
		u, err := s.Usage(ctx, t0, l)
		if err != nil || u.Orders != 5 || u.Spent != 500 {
			t.Fatalf("Usage = %+v, %v; want 5 orders, 500 spent", u, err)
		}
	})
}
