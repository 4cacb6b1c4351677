package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Limiter. Limit is required; other zero values take
// the defaults documented on each field.
type Options struct {
	// Limit is the API key's limit, e.g. one token per second, burst 20.
	Limit Limit
	// MaxWait bounds how long Wait keeps a caller in line; 0 means a caller
	// is only let through when a token is free at once.
	MaxWait time.Duration
	// Shared is a bucket shared with other replicas (redisstore); nil means
	// the in-process bucket only. While Shared fails, the in-process bucket
	// is used.
	Shared Bucket
	// Outage tracks Shared's reachability and is shared with the
	// RetryMemory using the same backend; nil means a new one (only
	// needed with Shared).
	Outage *Outage
	// Logger receives outage messages; nil discards them.
	Logger *slog.Logger
	// Registerer receives the limiter's metrics; nil means none.
	Registerer prometheus.Registerer
}

// Decision is the outcome of Wait.
type Decision struct {
	// Allowed: the caller may send one request now.
	Allowed bool
	// RetryAfter, when not Allowed, is when a token would be free for the
	// caller, computed from the bucket.
	RetryAfter time.Duration
	// Waited is how long the caller was kept in line.
	Waited time.Duration
}

// Limiter puts callers in line for one API key's tokens. Create it with
// New; it is safe for concurrent use.
type Limiter struct {
	limit   Limit
	maxWait time.Duration
	local   *Memory
	shared  Bucket
	outage  *Outage

	waiting  prometheus.Gauge
	waited   prometheus.Histogram
	rejected prometheus.Counter
	api429   prometheus.Counter
}

// checkEvery is how often a caller in line asks whether a pause voided its
// reservation, so that a pause reaches callers of every replica.
const checkEvery = 500 * time.Millisecond

// lateBy is how much after its token is due a caller in line goes. The
// API's bucket started when our first request arrived, a little after ours
// did; without a margin, a request that travels faster than that first one
// reaches the API just before its token and gets a 429.
const lateBy = 50 * time.Millisecond

// New builds a Limiter. It returns an error for an invalid Limit, a
// negative MaxWait or metrics that cannot be registered.
func New(opts Options) (*Limiter, error) {
	local, err := NewMemory(opts.Limit, nil)
	if err != nil {
		return nil, err
	}
	if opts.MaxWait < 0 {
		return nil, errors.New("ratelimit: MaxWait must not be negative")
	}
	l := &Limiter{
		limit:   opts.Limit,
		maxWait: opts.MaxWait,
		local:   local,
		shared:  opts.Shared,
		outage:  opts.Outage,
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "khproxy_ratelimit_waiting",
			Help: "Requests waiting in line for a token now.",
		}),
		waited: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "khproxy_ratelimit_wait_seconds",
			Help:    "Time requests that had to wait spent in line for a token.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60},
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "khproxy_ratelimit_rejected_total",
			Help: "Requests khproxy answered 429 itself because no token would be free within KH_RATE_WAIT.",
		}),
		api429: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "khproxy_ratelimit_upstream_429_total",
			Help: "429 answers from the API, each of which paused the bucket.",
		}),
	}
	if l.shared != nil && l.outage == nil {
		if l.outage, err = NewOutage(opts.Logger, opts.Registerer); err != nil {
			return nil, err
		}
	}
	tokens := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "khproxy_ratelimit_tokens",
		Help: "Tokens free in the key's bucket (shared when Redis is used); negative when tokens are promised to waiting requests.",
	}, l.tokens)
	if err := register(opts.Registerer, l.waiting, l.waited, l.rejected, l.api429, tokens); err != nil {
		return nil, err
	}
	return l, nil
}

// tokens reads the free tokens for the gauge; a scrape during an outage
// reads the local bucket without counting a fallback.
func (l *Limiter) tokens() float64 {
	var t float64
	read := func(ctx context.Context) (err error) {
		t, err = l.shared.Tokens(ctx)
		return err
	}
	if l.shared != nil && l.outage.peek(context.Background(), read) {
		return t
	}
	t, _ = l.local.Tokens(context.Background()) // Memory never fails
	return t
}

// Limit returns the limit l paces to.
func (l *Limiter) Limit() Limit { return l.limit }

// call runs f on the shared bucket when there is one and it is reachable,
// else on the local one, and returns the bucket used.
func (l *Limiter) call(ctx context.Context, f func(context.Context, Bucket) error) Bucket {
	if l.shared != nil && l.outage.try(ctx, func(ctx context.Context) error { return f(ctx, l.shared) }) {
		return l.shared
	}
	_ = f(ctx, l.local) // Memory never fails
	return l.local
}

// Wait keeps the caller in line until a token is free, for at most the
// limiter's MaxWait. When the wait would be longer, it decides at once:
// not allowed, with RetryAfter. A caller whose ctx ends leaves the line,
// freeing its token, and gets ctx's error. Failures of the shared bucket
// are never returned: the local bucket stands in.
func (l *Limiter) Wait(ctx context.Context) (Decision, error) {
	return l.WaitUntil(ctx, time.Time{})
}

// WaitUntil is Wait with a further bound: the caller is not kept in line
// past deadline (zero: no further bound).
func (l *Limiter) WaitUntil(ctx context.Context, deadline time.Time) (Decision, error) {
	start := time.Now()
	end := start.Add(l.maxWait)
	if !deadline.IsZero() && deadline.Before(end) {
		end = deadline
	}
	for {
		var r Reservation
		b := l.call(ctx, func(ctx context.Context, b Bucket) (err error) {
			r, err = b.Reserve(ctx, max(time.Until(end), 0))
			return err
		})
		if !r.OK {
			l.rejected.Inc()
			return Decision{RetryAfter: r.Delay, Waited: time.Since(start)}, nil
		}
		if r.Delay <= 0 {
			return l.allowed(start), nil
		}
		valid, err := l.sleep(ctx, b, r)
		if err != nil {
			return Decision{Waited: time.Since(start)}, err
		}
		if valid {
			return l.allowed(start), nil
		}
		// A pause voided the reservation: get in line again.
	}
}

func (l *Limiter) allowed(start time.Time) Decision {
	d := time.Since(start)
	if d > time.Millisecond {
		l.waited.Observe(d.Seconds())
	}
	return Decision{Allowed: true, Waited: d}
}

// sleep waits out r's delay, asking b every checkEvery whether a pause
// voided r. It reports whether r is still valid at its time, or ctx's
// error after giving r's token back.
func (l *Limiter) sleep(ctx context.Context, b Bucket, r Reservation) (bool, error) {
	l.waiting.Inc()
	defer l.waiting.Dec()
	at := time.Now().Add(r.Delay + lateBy)
	t := time.NewTimer(min(r.Delay+lateBy, checkEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.onBucket(ctx, b, func(ctx context.Context) error { return b.Cancel(ctx, r) })
			return false, ctx.Err()
		case <-t.C:
		}
		valid := true
		l.onBucket(ctx, b, func(ctx context.Context) (err error) {
			valid, err = b.Valid(ctx, r)
			return err
		})
		if !valid || !time.Now().Before(at) {
			return valid, nil
		}
		t.Reset(min(time.Until(at), checkEvery))
	}
}

// onBucket runs f for a reservation made on b. When b is the shared bucket
// and it fails, the failure is recorded and f's outcome left at its zero.
func (l *Limiter) onBucket(ctx context.Context, b Bucket, f func(context.Context) error) {
	if b == l.local {
		_ = f(ctx)
		return
	}
	l.outage.try(ctx, f)
}

// Pause stops the bucket for d, as an API 429 with Retry-After d asks, and
// counts the 429. Every caller in line waits; a d of 0 pauses for one
// token's time.
func (l *Limiter) Pause(ctx context.Context, d time.Duration) {
	l.api429.Inc()
	if d <= 0 {
		d = l.limit.Every
	}
	if l.call(ctx, func(ctx context.Context, b Bucket) error { return b.Pause(ctx, d) }) != l.local {
		// The local bucket stands in during an outage: pause it too.
		_ = l.local.Pause(ctx, d)
	}
}

// Observe lowers the bucket to the API's X-RateLimit-Remaining and
// X-RateLimit-Reset headers when they say fewer tokens are left than the
// bucket thinks. Reset is read as seconds until the bucket is full, or as a
// Unix time when it is that large (spec §4.3 leaves the unit open).
func (l *Limiter) Observe(ctx context.Context, h http.Header) {
	remaining, err := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Remaining")))
	if err != nil || remaining < 0 {
		return
	}
	full := resetDuration(h.Get("X-RateLimit-Reset"), time.Now())
	l.call(ctx, func(ctx context.Context, b Bucket) error { return b.Sync(ctx, remaining, full) })
}

// unixThreshold tells a Unix time from a number of seconds in
// X-RateLimit-Reset: no bucket takes 30 years to fill.
const unixThreshold = 1e9

func resetDuration(v string, now time.Time) time.Duration {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	if n >= unixThreshold {
		return max(time.Unix(n, 0).Sub(now), 0)
	}
	if n > math.MaxInt64/int64(time.Second) {
		return 0
	}
	return time.Duration(n) * time.Second
}
