package webhook

import (
	"context"
	"errors"
	"testing"
)

// claimResult is what a claim in another goroutine returned.
type claimResult struct {
	d      *delivery
	replay bool
	err    error
}

// waitingClaim starts a claim of key that must block behind an in-flight
// delivery; it returns once the claim is waiting.
func waitingClaim(t *testing.T, s *seenSet, ctx context.Context, key [32]byte) <-chan claimResult {
	t.Helper()
	waiting := make(chan struct{}, 1)
	s.onWait = func() { waiting <- struct{}{} }
	res := make(chan claimResult, 1)
	go func() {
		d, replay, err := s.claim(ctx, key)
		res <- claimResult{d, replay, err}
	}()
	<-waiting
	return res
}

func TestSeenSet(t *testing.T) {
	key := payloadKey("1750000000", body{[]byte("body")})
	t.Run("identical payload while in flight, then answered 2xx: replay", func(t *testing.T) {
		s := newSeenSet(10)
		d, replay, err := s.claim(t.Context(), key)
		if err != nil || replay || d == nil {
			t.Fatalf("first claim: %v %v %v", d, replay, err)
		}
		res := waitingClaim(t, s, t.Context(), key)
		s.release(key, d, true)
		if r := <-res; r.err != nil || !r.replay || r.d != nil {
			t.Fatalf("waiting claim: %+v, want replay", r)
		}
		if _, replay, _ := s.claim(t.Context(), key); !replay {
			t.Error("a later identical payload is not a replay")
		}
	})
	t.Run("identical payload while in flight, then failed: forwarded anew", func(t *testing.T) {
		s := newSeenSet(10)
		d, _, _ := s.claim(t.Context(), key)
		res := waitingClaim(t, s, t.Context(), key)
		s.release(key, d, false)
		r := <-res
		if r.err != nil || r.replay || r.d == nil || r.d == d {
			t.Fatalf("waiting claim: %+v, want a new delivery", r)
		}
		s.release(key, r.d, true)
	})
	t.Run("sender gone while waiting", func(t *testing.T) {
		s := newSeenSet(10)
		d, _, _ := s.claim(t.Context(), key)
		ctx, cancel := context.WithCancel(t.Context())
		res := waitingClaim(t, s, ctx, key)
		cancel()
		if r := <-res; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("waiting claim: %+v, want context.Canceled", r)
		}
		s.release(key, d, true)
	})
	t.Run("bounded: the oldest payload is forgotten", func(t *testing.T) {
		s := newSeenSet(2)
		keys := [][32]byte{payloadKey("1", nil), payloadKey("2", nil), payloadKey("3", nil)}
		for _, k := range keys {
			d, _, _ := s.claim(t.Context(), k)
			s.release(k, d, true)
		}
		if got := s.lru.Len(); got != 2 {
			t.Errorf("len = %d, want 2", got)
		}
		if _, replay, _ := s.claim(t.Context(), keys[0]); replay {
			t.Error("evicted payload still counted as seen")
		}
		if _, replay, _ := s.claim(t.Context(), keys[2]); !replay {
			t.Error("newest payload forgotten")
		}
	})
}

func TestPayloadKey(t *testing.T) {
	// The key is the payload's SHA-256: "<t>.<body>", with t as sent.
	if payloadKey("1", body{[]byte("2.3")}) != payloadKey("1.2", body{[]byte("3")}) {
		t.Error("payloadKey does not hash the signed payload")
	}
	if payloadKey("1", body{[]byte("x")}) == payloadKey("01", body{[]byte("x")}) {
		t.Error("payloadKey normalised t")
	}
}
