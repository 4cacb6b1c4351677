// Package ratelimittest is the conformance suite every ratelimit.Bucket
// runs: the in-process Memory and the Redis store must answer alike.
//
// The suite uses the real clock with a token every minute, so that nothing
// refills while it runs and its bounds hold on a slow machine.
package ratelimittest

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"khproxy/ratelimit"
)

// every is the suite's token interval; slack absorbs the time the suite
// itself takes.
const (
	every = time.Minute
	slack = 5 * time.Second
)

// NewBucket returns a new, full bucket for l, independent of every other
// bucket it returned.
type NewBucket func(t *testing.T, l ratelimit.Limit) ratelimit.Bucket

// Run runs the conformance suite against buckets from newBucket.
func Run(t *testing.T, newBucket NewBucket) {
	tests := []struct {
		name string
		fn   func(*testing.T, NewBucket)
	}{
		{"BurstThenLine", testBurstThenLine},
		{"CancelFreesThePlace", testCancel},
		{"Tokens", testTokens},
		{"PauseVoidsTheLine", testPause},
		{"SyncOnlyLowers", testSync},
		{"ConcurrentCallersGetDistinctTurns", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newBucket) })
	}
}

func reserve(t *testing.T, b ratelimit.Bucket, maxWait time.Duration) ratelimit.Reservation {
	t.Helper()
	r, err := b.Reserve(context.Background(), maxWait)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// near fails unless got is within slack below want (time only passes).
func near(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if got > want || got < want-slack {
		t.Errorf("%s = %s, want %s (less at most %s)", what, got, want, slack)
	}
}

func testBurstThenLine(t *testing.T, newBucket NewBucket) {
	b := newBucket(t, ratelimit.Limit{Every: every, Burst: 3})
	for i := range 3 {
		if r := reserve(t, b, 0); !r.OK || r.Delay != 0 {
			t.Fatalf("burst token %d: %+v, want OK at once", i, r)
		}
	}
	r := reserve(t, b, 0)
	if r.OK {
		t.Fatalf("fourth token with no wait allowed: %+v", r)
	}
	near(t, "retry after", r.Delay, every)
	for i := 1; i <= 2; i++ {
		r := reserve(t, b, 3*every)
		if !r.OK {
			t.Fatalf("token in line %d refused: %+v", i, r)
		}
		near(t, "delay", r.Delay, time.Duration(i)*every)
	}
	r = reserve(t, b, 2*every)
	if r.OK {
		t.Fatalf("token beyond the wait bound allowed: %+v", r)
	}
	near(t, "retry after", r.Delay, 3*every)
}

func testCancel(t *testing.T, newBucket NewBucket) {
	ctx := context.Background()
	b := newBucket(t, ratelimit.Limit{Every: every, Burst: 1})
	reserve(t, b, 0)
	first := reserve(t, b, time.Hour)
	second := reserve(t, b, time.Hour)
	near(t, "second in line", second.Delay, 2*every)
	if err := b.Cancel(ctx, first); err != nil {
		t.Fatal(err)
	}
	// The first caller left: the next one gets its place, not a third.
	next := reserve(t, b, time.Hour)
	near(t, "after a cancel", next.Delay, 2*every)
	// A refused reservation has nothing to give back.
	refused := reserve(t, b, 0)
	if err := b.Cancel(ctx, refused); err != nil {
		t.Fatal(err)
	}
	near(t, "after cancelling a refusal", reserve(t, b, time.Hour).Delay, 3*every)
}

func tokens(t *testing.T, b ratelimit.Bucket) float64 {
	t.Helper()
	v, err := b.Tokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func nearTokens(t *testing.T, what string, got, want float64) {
	t.Helper()
	// slack worth of refill at most
	if got < want || got > want+float64(slack)/float64(every) {
		t.Errorf("%s: tokens = %.3f, want %.3f", what, got, want)
	}
}

func testTokens(t *testing.T, newBucket NewBucket) {
	b := newBucket(t, ratelimit.Limit{Every: every, Burst: 4})
	nearTokens(t, "full", tokens(t, b), 4)
	nearTokens(t, "full", tokens(t, b), 4) // reading takes nothing
	reserve(t, b, 0)
	nearTokens(t, "after one", tokens(t, b), 3)
	for range 4 {
		reserve(t, b, time.Hour)
	}
	nearTokens(t, "one promised beyond empty", tokens(t, b), -1)
}

func testPause(t *testing.T, newBucket NewBucket) {
	ctx := context.Background()
	b := newBucket(t, ratelimit.Limit{Every: every, Burst: 3})
	now := reserve(t, b, 0)
	inLine := reserve(t, b, 0)
	if err := b.Pause(ctx, 10*every); err != nil {
		t.Fatal(err)
	}
	for _, r := range []ratelimit.Reservation{now, inLine} {
		if ok, err := b.Valid(ctx, r); err != nil || ok {
			t.Errorf("Valid after a pause = %v, %v; want false", ok, err)
		}
	}
	r := reserve(t, b, 0)
	if r.OK {
		t.Fatalf("token during a pause: %+v", r)
	}
	near(t, "retry after", r.Delay, 10*every)
	// After the pause, one token is free, then one per interval.
	near(t, "first after the pause", reserve(t, b, time.Hour).Delay, 10*every)
	last := reserve(t, b, time.Hour)
	near(t, "second after the pause", last.Delay, 11*every)
	// A shorter pause changes nothing and voids nothing.
	if err := b.Pause(ctx, every); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Valid(ctx, last); err != nil || !ok {
		t.Errorf("Valid after a shorter pause = %v, %v; want true", ok, err)
	}
	near(t, "after a shorter pause", reserve(t, b, time.Hour).Delay, 12*every)
	// Cancelling a voided reservation gives nothing back.
	if err := b.Cancel(ctx, inLine); err != nil {
		t.Fatal(err)
	}
	near(t, "after cancelling a voided one", reserve(t, b, time.Hour).Delay, 13*every)
}

func testSync(t *testing.T, newBucket NewBucket) {
	ctx := context.Background()
	b := newBucket(t, ratelimit.Limit{Every: every, Burst: 20})
	sync := func(remaining int, full time.Duration) {
		t.Helper()
		if err := b.Sync(ctx, remaining, full); err != nil {
			t.Fatal(err)
		}
	}
	sync(5, 0)
	nearTokens(t, "lowered to 5", tokens(t, b), 5)
	sync(10, 0)
	nearTokens(t, "never raised", tokens(t, b), 5)
	sync(20, 30*every) // longer than the bucket can take to fill: ignored
	nearTokens(t, "implausible reset", tokens(t, b), 5)
	sync(10, 18*every) // full in 18 intervals: 2 tokens now
	nearTokens(t, "lowered by the reset", tokens(t, b), 2)
	sync(0, 0)
	if r := reserve(t, b, 0); r.OK {
		t.Errorf("token after the API said none are left: %+v", r)
	}
}

func testConcurrent(t *testing.T, newBucket NewBucket) {
	b := newBucket(t, ratelimit.Limit{Every: every, Burst: 2})
	const n = 12
	delays := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := b.Reserve(context.Background(), time.Hour)
			if err != nil || !r.OK {
				t.Errorf("reserve %d: %+v, %v", i, r, err)
			}
			delays[i] = r.Delay
		})
	}
	wg.Wait()
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	for i, d := range delays {
		near(t, "turn", d, time.Duration(max(i-1, 0))*every)
	}
}
