package redisstore_test

import (
	"context"
	"testing"
	"time"

	"khproxy/ratelimit"
	"khproxy/ratelimit/redisstore/redistest"
)

// TestFlightBoard checks the flight script's rules on a real Redis: only
// an entry of another owner whose caller left, or whose owner stopped
// refreshing it, is claimed, once; a live one with its caller waiting is
// "busy"; finishing reports a claim.
func TestFlightBoard(t *testing.T) {
	c := newClient(t, redistest.Start(t))
	ctx := context.Background()
	const ttl, keep = 300 * time.Millisecond, time.Minute
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	claim := func(t *testing.T, s interface {
		ClaimFlight(context.Context, string, string) (string, bool, bool, error)
	}, fp, owner string) (string, bool, bool) {
		t.Helper()
		key, ok, busy, err := s.ClaimFlight(ctx, fp, owner)
		if err != nil {
			t.Fatal(err)
		}
		return key, ok, busy
	}

	t.Run("waiting caller: busy, not claimable; gone: claimed once", func(t *testing.T) {
		s := newStore(t, c)
		e := ratelimit.FlightEntry{FP: "fp1", ID: "A/1", Key: "k1", Owner: "A"}
		must(s.RegisterFlight(ctx, e, time.Minute, keep))
		if _, ok, busy := claim(t, s, "fp1", "B"); ok || !busy {
			t.Errorf("waiting caller: claimed %v busy %v, want busy only", ok, busy)
		}
		if _, ok, busy := claim(t, s, "fp1", "A"); ok || busy {
			t.Errorf("its own replica: claimed %v busy %v, want neither (it has the flight itself)", ok, busy)
		}
		must(s.LeaveFlight(ctx, "fp1", "A/1"))
		if key, ok, _ := claim(t, s, "fp1", "B"); !ok || key != "k1" {
			t.Errorf("caller gone: claimed %v key %q, want k1", ok, key)
		}
		if _, ok, busy := claim(t, s, "fp1", "C"); ok || busy {
			t.Errorf("claimed already: claimed %v busy %v, want neither", ok, busy)
		}
		if mine, err := s.MarkFlightClaimed(ctx, "fp1", "A/1"); err != nil || mine {
			t.Errorf("owner's own retry after a claim: %v %v, want false", mine, err)
		}
		if claimed, err := s.FinishFlight(ctx, "fp1", "A/1", "k1", keep); err != nil || !claimed {
			t.Errorf("finish: claimed %v %v, want true", claimed, err)
		}
		if _, ok, _ := s.Get(ctx, "fp1"); ok {
			t.Error("a claimed flight's key was kept: its claimer has it")
		}
		if _, ok, busy := claim(t, s, "fp1", "B"); ok || busy {
			t.Error("a finished flight is still on the board")
		}
	})
	t.Run("an unrefreshed entry counts as abandoned; a refreshed one does not", func(t *testing.T) {
		s := newStore(t, c)
		dead := ratelimit.FlightEntry{FP: "fp2", ID: "A/1", Key: "dead", Owner: "A"}
		live := ratelimit.FlightEntry{FP: "fp3", ID: "A/2", Key: "live", Owner: "A"}
		must(s.RegisterFlight(ctx, dead, ttl, keep))
		must(s.RegisterFlight(ctx, live, ttl, keep))
		for range 4 {
			time.Sleep(ttl / 3)
			must(s.RefreshFlights(ctx, []ratelimit.FlightEntry{live}, ttl, keep))
		}
		if key, ok, _ := claim(t, s, "fp2", "B"); !ok || key != "dead" {
			t.Errorf("crashed owner: claimed %v key %q, want its key", ok, key)
		}
		if _, ok, busy := claim(t, s, "fp3", "B"); ok || !busy {
			t.Errorf("refreshed owner: claimed %v busy %v, want busy only", ok, busy)
		}
		if _, ok, _ := claim(t, s, "fp2", "C"); ok {
			t.Error("an abandoned entry was claimed twice")
		}
	})
	t.Run("finishing unclaimed keeps the key in the same step", func(t *testing.T) {
		s := newStore(t, c)
		must(s.RegisterFlight(ctx, ratelimit.FlightEntry{FP: "fp6", ID: "A/1", Key: "k6", Owner: "A"}, time.Minute, keep))
		must(s.RegisterFlight(ctx, ratelimit.FlightEntry{FP: "fp7", ID: "A/2", Key: "k7", Owner: "A"}, time.Minute, keep))
		if claimed, err := s.FinishFlight(ctx, "fp6", "A/1", "k6", keep); err != nil || claimed {
			t.Fatalf("finish: %v %v", claimed, err)
		}
		if key, ok, err := s.Get(ctx, "fp6"); err != nil || !ok || key != "k6" {
			t.Errorf("retry memory after finish: %q %v %v, want k6", key, ok, err)
		}
		if _, err := s.FinishFlight(ctx, "fp7", "A/2", "k7", 0); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.Get(ctx, "fp7"); ok {
			t.Error("a delivered flight's key was kept")
		}
	})
	t.Run("a refresh puts back what a Redis restart lost", func(t *testing.T) {
		s := newStore(t, c)
		e := ratelimit.FlightEntry{FP: "fp5", ID: "A/1", Key: "k5", Owner: "A"}
		must(s.RegisterFlight(ctx, e, time.Minute, keep))
		must(c.FlushAll(ctx).Err())
		must(s.RefreshFlights(ctx, []ratelimit.FlightEntry{e}, time.Minute, keep))
		if _, ok, busy := claim(t, s, "fp5", "B"); ok || !busy {
			t.Errorf("after the flush and a refresh: claimed %v busy %v, want busy", ok, busy)
		}
		must(s.LeaveFlight(ctx, "fp5", "A/1"))
		must(s.RefreshFlights(ctx, []ratelimit.FlightEntry{e}, time.Minute, keep))
		if key, ok, _ := claim(t, s, "fp5", "B"); !ok || key != "k5" {
			t.Errorf("a refresh forgot that the caller left: claimed %v key %q", ok, key)
		}
	})
	t.Run("unclaim gives a flight back", func(t *testing.T) {
		s := newStore(t, c)
		e := ratelimit.FlightEntry{FP: "fp4", ID: "A/1", Key: "k4", Owner: "A", Gone: true}
		must(s.RegisterFlight(ctx, e, time.Minute, keep))
		if mine, err := s.MarkFlightClaimed(ctx, "fp4", "A/1"); err != nil || !mine {
			t.Fatalf("mark: %v %v", mine, err)
		}
		if _, ok, _ := claim(t, s, "fp4", "B"); ok {
			t.Error("claimed by another replica while its owner's retry holds it")
		}
		must(s.UnclaimFlight(ctx, "fp4", "A/1"))
		if _, ok, _ := claim(t, s, "fp4", "B"); !ok {
			t.Error("not claimable after the owner's retry gave it up")
		}
	})
}
