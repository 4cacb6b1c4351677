package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"khproxy/guard"
	"khproxy/guard/guardtest"
	"khproxy/ratelimit/redisstore"
	"khproxy/ratelimit/redisstore/redistest"
)

func TestGuardStore(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	guardtest.Run(t, func(t *testing.T) guard.Store {
		client, err := redisstore.NewClient(srv.URL(), "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		n++ // a fresh API key per subtest: fresh, empty counters
		s, err := redisstore.New(client, "kh_live_GUARDTEST"+string(rune('A'+n)))
		if err != nil {
			t.Fatal(err)
		}
		return s.Guard()
	})
}

// BenchmarkGuardStoreOrder measures the shared counters' part of one order
// against a real redis-server on loopback: Reserve, then Settle at another
// amount (guard.Guard.Record's write when the answer's amount differs from
// the price), with 100 orders in the period.
func BenchmarkGuardStoreOrder(b *testing.B) {
	srv := redistest.Start(b)
	client, err := redisstore.NewClient(srv.URL(), "")
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	s, err := redisstore.New(client, "kh_live_GUARDBENCH")
	if err != nil {
		b.Fatal(err)
	}
	g := s.Guard()
	ctx := context.Background()
	l := guard.Limits{Orders: 1000, OrderPer: time.Hour, Spend: 1 << 50, SpendPer: time.Hour, Keep: 10 * time.Minute}
	b.Run("order", func(b *testing.B) {
		now := time.Now()
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			i++
			now = now.Add(36 * time.Second)
			if _, err := g.Reserve(ctx, guard.Order{Key: "k" + strconv.Itoa(i), Time: now, Cents: 999}, l); err != nil {
				b.Fatal(err)
			}
			if err := g.Settle(ctx, "k"+strconv.Itoa(i), 1099); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Two PINGs: the same two round trips with no work, for scale.
	b.Run("two pings", func(b *testing.B) {
		for b.Loop() {
			if err := s.Check(ctx); err != nil {
				b.Fatal(err)
			}
			if err := s.Check(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
