package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"khproxy/ratelimit"
)

// fakeFlights is a FlightStore in memory that can be made unreachable.
type fakeFlights struct {
	mu   sync.Mutex
	down bool
	// claim, when set, is what ClaimFlight answers; else busy.
	claim     func() (key string, ok, busy bool)
	entries   map[string]ratelimit.FlightEntry // by ID
	refreshes int
}

var errFlightsDown = errors.New("store down")

func (s *fakeFlights) check() error {
	if s.down {
		return errFlightsDown
	}
	return nil
}

func (s *fakeFlights) setDown(d bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = d
}

func (s *fakeFlights) RegisterFlight(_ context.Context, e ratelimit.FlightEntry, _, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	s.entries[e.ID] = e
	return nil
}

func (s *fakeFlights) RefreshFlights(_ context.Context, es []ratelimit.FlightEntry, _, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	s.refreshes++
	return nil
}

func (s *fakeFlights) LeaveFlight(_ context.Context, _, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	e := s.entries[id]
	e.Gone = true
	s.entries[id] = e
	return nil
}

func (s *fakeFlights) ClaimFlight(context.Context, string, string) (string, bool, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return "", false, false, err
	}
	if s.claim != nil {
		key, ok, busy := s.claim()
		return key, ok, busy, nil
	}
	return "", false, true, nil
}

func (s *fakeFlights) MarkFlightClaimed(context.Context, string, string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return false, s.check()
}

func (s *fakeFlights) UnclaimFlight(context.Context, string, string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.check()
}

func (s *fakeFlights) FinishFlight(_ context.Context, _, id, _ string, _ time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return false, err
	}
	delete(s.entries, id)
	return true, nil
}

func (s *fakeFlights) snapshot() (map[string]ratelimit.FlightEntry, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]ratelimit.FlightEntry{}
	for k, v := range s.entries {
		m[k] = v
	}
	return m, s.refreshes
}

// TestFlightBoardOutage: an unreachable store makes the board answer as if
// it were empty, and once it is back the replica's entries are registered
// again, with their callers' state.
func TestFlightBoardOutage(t *testing.T) {
	s, outage, b := newTestBoard(t, nil)

	s.setDown(true)
	b.OutageHold = 0 // answer at once while down
	b.Register("fp", "1", "k1")
	b.Leave("fp", "1")
	if key, ok, busy := b.Claim(t.Context(), "fp"); ok || busy || key != "" {
		t.Errorf("Claim while down = %q %v %v, want nothing", key, ok, busy)
	}
	if !b.MarkClaimed("fp", "1") {
		t.Error("MarkClaimed while down = false, want true (go on locally)")
	}
	if claimed, kept := b.Finish("fp", "2", "k2", true); claimed || kept {
		t.Errorf("Finish while down = %v, %v; want neither claimed nor kept (the caller keeps the key itself)", claimed, kept)
	}
	if !outage.Down() {
		t.Error("the outage was not noticed")
	}

	s.setDown(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		entries, refreshes := s.snapshot()
		back := false
		for _, e := range entries {
			back = len(entries) == 1 && e.Key == "k1" && e.Gone && refreshes > 0
		}
		if back {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage: entries %v, %d refreshes; want k1 registered again as gone, and a heartbeat", entries, refreshes)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok, busy := b.Claim(t.Context(), "fp"); ok || !busy {
		t.Errorf("Claim with the store back = %v %v, want the store's answer (busy)", ok, busy)
	}
}

// TestFlightBoardClaimHoldsThroughAShortOutage: a retry that reaches a
// replica while the store is down waits for the store (a Redis restart)
// and gets the abandoned request's key, instead of going on alone with a
// new one; a longer outage is waited out only for OutageHold.
func TestFlightBoardClaimHoldsThroughAShortOutage(t *testing.T) {
	s, outage, b := newTestBoard(t, func() (string, bool, bool) { return "k1", true, false })
	s.setDown(true)
	b.Register("fp", "1", "k0") // notices the outage
	if !outage.Down() {
		t.Fatal("the outage was not noticed")
	}
	b.OutageHold = 10 * time.Second
	time.AfterFunc(200*time.Millisecond, func() { s.setDown(false) })
	start := time.Now()
	key, ok, _ := b.Claim(t.Context(), "fp")
	if !ok || key != "k1" {
		t.Errorf("Claim across a short outage = %q %v, want the store's k1", key, ok)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Claim took %v: it should end soon after the store is back", d)
	}

	s.setDown(true)
	b.Register("fp", "2", "k2") // notices the next outage
	b.OutageHold = 300 * time.Millisecond
	start = time.Now()
	if key, ok, busy := b.Claim(t.Context(), "fp"); ok || busy || key != "" {
		t.Errorf("Claim through a long outage = %q %v %v, want nothing (go on alone)", key, ok, busy)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("Claim gave up after %v, want about OutageHold (300ms) into the outage", d)
	}
	// Later in the same outage nothing is waited for: a long outage must
	// not delay every request.
	start = time.Now()
	if _, ok, _ := b.Claim(t.Context(), "fp"); ok {
		t.Error("Claim later in a long outage claimed something")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Claim later in a long outage took %v, want at once", d)
	}
}

// TestFlightBoardDistrustsEmptyAnswersAfterAnOutage: right after the store
// is back, other replicas may not have put their entries back yet, so an
// empty answer says busy (look again) rather than "nothing there".
func TestFlightBoardDistrustsEmptyAnswersAfterAnOutage(t *testing.T) {
	s, _, b := newTestBoard(t, func() (string, bool, bool) { return "", false, false })
	if _, ok, busy := b.Claim(t.Context(), "fp"); ok || busy {
		t.Errorf("Claim before any outage = %v %v, want the store's empty answer", ok, busy)
	}
	s.setDown(true)
	b.Register("fp", "1", "k1")
	s.setDown(false)
	b.OutageHold = 5 * time.Second
	if _, ok, busy := b.Claim(t.Context(), "fp"); ok || !busy {
		t.Errorf("Claim as the outage ends = %v %v, want busy", ok, busy)
	}
}

// newTestBoard returns a board on a fake store whose ClaimFlight answers
// claim (nil: busy), with a short heartbeat and ttl; it is closed when
// the test ends.
func newTestBoard(t testing.TB, claim func() (string, bool, bool)) (*fakeFlights, *ratelimit.Outage, *ratelimit.FlightBoard) {
	t.Helper()
	s := &fakeFlights{entries: map[string]ratelimit.FlightEntry{}, claim: claim}
	outage, err := ratelimit.NewOutage(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := ratelimit.NewFlightBoard(s, outage, 20*time.Millisecond, 100*time.Millisecond, time.Minute)
	t.Cleanup(b.Close)
	return s, outage, b
}
