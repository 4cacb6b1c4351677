package ratelimit_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/ratelimit"
	"khproxy/ratelimit/ratelimittest"
)

func newMemory(t testing.TB, l ratelimit.Limit) *ratelimit.Memory {
	t.Helper()
	m, err := ratelimit.NewMemory(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWaitLinesUpCallersBeyondTheBurst(t *testing.T) {
	l, reg := ratelimittest.NewLimiter(t, ratelimit.Options{
		Limit:   ratelimit.Limit{Every: 100 * time.Millisecond, Burst: 2},
		MaxWait: 10 * time.Second,
	})
	const n = 6
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			d, err := l.Wait(context.Background())
			if err != nil || !d.Allowed {
				t.Errorf("caller %d: %+v, %v", i, d, err)
			}
		})
	}
	wg.Wait()
	if got := ratelimittest.Metric(t, reg, "khproxy_ratelimit_wait_seconds"); got < 1 {
		t.Errorf("callers that waited = %v, want some: %d callers, burst 2", got, n)
	}
	if got := ratelimittest.Metric(t, reg, "khproxy_ratelimit_rejected_total"); got != 0 {
		t.Errorf("rejected = %v, want 0", got)
	}
}

func TestWaitRefusesBeyondMaxWait(t *testing.T) {
	l, reg := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: ratelimit.Limit{Every: time.Minute, Burst: 1}, MaxWait: time.Second})
	ctx := context.Background()
	if d, err := l.Wait(ctx); err != nil || !d.Allowed {
		t.Fatalf("first: %+v, %v", d, err)
	}
	d, err := l.Wait(ctx)
	if err != nil || d.Allowed {
		t.Fatalf("second: %+v, %v; want refused", d, err)
	}
	if d.RetryAfter <= 55*time.Second || d.RetryAfter > time.Minute {
		t.Errorf("RetryAfter = %s, want about a minute", d.RetryAfter)
	}
	if d.Waited > 500*time.Millisecond {
		t.Errorf("a refusal waited %s; it should be decided at once", d.Waited)
	}
	if got := ratelimittest.Metric(t, reg, "khproxy_ratelimit_rejected_total"); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}
	// The deadline of WaitUntil bounds the wait further.
	l2, _ := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: ratelimit.Limit{Every: time.Minute, Burst: 1}, MaxWait: time.Hour})
	l2.Wait(ctx)
	if d, _ := l2.WaitUntil(ctx, time.Now().Add(time.Second)); d.Allowed {
		t.Errorf("WaitUntil a second from now let a caller in line for a minute: %+v", d)
	}
}

func TestCallerWhoLeavesFreesItsPlace(t *testing.T) {
	bucket := newMemory(t, ratelimit.Limit{Every: time.Minute, Burst: 1})
	l, reg := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: ratelimit.Limit{Every: time.Minute, Burst: 1}, MaxWait: time.Hour, Shared: bucket})
	if d, err := l.Wait(context.Background()); err != nil || !d.Allowed {
		t.Fatalf("first: %+v, %v", d, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := l.Wait(ctx)
		errc <- err
	}()
	testutil.WaitFor(t, "a caller in line", func() bool { return ratelimittest.Metric(t, reg, "khproxy_ratelimit_waiting") == 1 })
	if tok, _ := bucket.Tokens(context.Background()); tok > -0.9 {
		t.Fatalf("tokens with one in line = %.2f, want about -1", tok)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	if tok, _ := bucket.Tokens(context.Background()); tok < -0.01 {
		t.Errorf("tokens after the caller left = %.2f, want its token back", tok)
	}
	if got := ratelimittest.Metric(t, reg, "khproxy_ratelimit_waiting"); got != 0 {
		t.Errorf("waiting = %v, want 0", got)
	}
}

func TestPauseReachesCallersInLine(t *testing.T) {
	bucket := newMemory(t, ratelimit.Limit{Every: 10 * time.Second, Burst: 1})
	l, reg := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: ratelimit.Limit{Every: 10 * time.Second, Burst: 1}, MaxWait: 30 * time.Second, Shared: bucket})
	ctx := context.Background()
	l.Wait(ctx)
	got := make(chan ratelimit.Decision, 1)
	go func() {
		d, _ := l.Wait(ctx)
		got <- d
	}()
	testutil.WaitFor(t, "a caller in line", func() bool { return ratelimittest.Metric(t, reg, "khproxy_ratelimit_waiting") == 1 })
	l.Pause(ctx, time.Hour)
	select {
	case d := <-got:
		if d.Allowed || d.RetryAfter < 59*time.Minute {
			t.Errorf("caller in line during an hour's pause: %+v, want refused with about an hour", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller in line did not learn of the pause")
	}
	if got := ratelimittest.Metric(t, reg, "khproxy_ratelimit_upstream_429_total"); got != 1 {
		t.Errorf("API 429s = %v, want 1", got)
	}
}

func TestObserveLowersTheBucket(t *testing.T) {
	ctx := context.Background()
	limit := ratelimit.Limit{Every: time.Minute, Burst: 20}
	tests := []struct {
		name    string
		header  http.Header
		allowed bool
	}{
		{"none left", http.Header{"X-Ratelimit-Remaining": {"0"}}, false},
		{"full in 20 minutes", http.Header{"X-Ratelimit-Remaining": {"19"}, "X-Ratelimit-Reset": {"1200"}}, false},
		{"full at a Unix time 20 minutes ahead", http.Header{"X-Ratelimit-Remaining": {"19"}, "X-Ratelimit-Reset": {unixIn(20 * time.Minute)}}, false},
		{"full later than the bucket can take", http.Header{"X-Ratelimit-Remaining": {"19"}, "X-Ratelimit-Reset": {unixIn(30 * time.Minute)}}, true},
		{"some left", http.Header{"X-Ratelimit-Remaining": {"3"}}, true},
		{"not a number", http.Header{"X-Ratelimit-Remaining": {"many"}}, true},
		{"negative", http.Header{"X-Ratelimit-Remaining": {"-1"}}, true},
		{"no headers", http.Header{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: limit})
			l.Observe(ctx, tt.header)
			if d, _ := l.Wait(ctx); d.Allowed != tt.allowed {
				t.Errorf("allowed = %v, want %v", d.Allowed, tt.allowed)
			}
		})
	}
}

func unixIn(d time.Duration) string { return strconv.FormatInt(time.Now().Add(d).Unix(), 10) }

// flaky is a bucket that fails while down, like an unreachable Redis.
type flaky struct {
	ratelimit.Bucket
	down  atomic.Bool
	calls atomic.Int64
}

var errDown = errors.New("connection refused")

func (f *flaky) Reserve(ctx context.Context, maxWait time.Duration) (ratelimit.Reservation, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return ratelimit.Reservation{}, errDown
	}
	return f.Bucket.Reserve(ctx, maxWait)
}

func TestSharedBucketOutage(t *testing.T) {
	shared := &flaky{Bucket: newMemory(t, ratelimit.Limit{Every: time.Millisecond, Burst: 100})}
	logs := &testutil.SyncBuffer{}
	l, reg := ratelimittest.NewLimiter(t, ratelimit.Options{
		Limit:   ratelimit.Limit{Every: time.Millisecond, Burst: 100},
		MaxWait: time.Second,
		Shared:  shared,
		Logger:  slog.New(slog.NewTextHandler(logs, nil)),
	})
	ctx := context.Background()
	wait := func() {
		t.Helper()
		if d, err := l.Wait(ctx); err != nil || !d.Allowed {
			t.Fatalf("Wait = %+v, %v", d, err)
		}
	}
	wait()
	shared.down.Store(true)
	before := shared.calls.Load()
	for range 20 {
		wait()
	}
	if n := shared.calls.Load() - before; n > 2 {
		t.Errorf("the unreachable bucket was tried %d times in a burst of 20; want one try, then a probe a second", n)
	}
	if n := strings.Count(logs.String(), "unreachable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs)
	}
	if got := ratelimittest.Metric(t, reg, "khproxy_redis_outages_total"); got != 1 {
		t.Errorf("outages = %v, want 1", got)
	}
	fallbacks := ratelimittest.Metric(t, reg, "khproxy_redis_fallbacks_total")
	if fallbacks < 20 {
		t.Errorf("fallbacks = %v, want at least 20", fallbacks)
	}
	for range 3 { // scrapes serve no request: they are no fallbacks
		ratelimittest.Metric(t, reg, "khproxy_ratelimit_tokens")
	}
	if got := ratelimittest.Metric(t, reg, "khproxy_redis_fallbacks_total"); got != fallbacks {
		t.Errorf("fallbacks = %v after three scrapes, want %v", got, fallbacks)
	}
	if got := ratelimittest.Metric(t, reg, "khproxy_redis_up"); got != 0 {
		t.Errorf("up = %v during the outage", got)
	}
	shared.down.Store(false)
	testutil.WaitFor(t, "the shared bucket back", func() bool {
		wait()
		return ratelimittest.Metric(t, reg, "khproxy_redis_up") == 1
	})
	if n := strings.Count(logs.String(), "reachable again"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, logs)
	}
}
