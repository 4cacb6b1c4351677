package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outage tracks whether the shared backend (Redis) can be reached, for the
// Limiter and the RetryMemory that use it: the first failure starts an
// outage, logged once and counted; while it lasts, calls go to the local
// state without trying the backend, except one probe every ProbeEvery; the
// first success ends it. Create it with NewOutage; it is safe for concurrent
// use.
type Outage struct {
	log        *slog.Logger
	now        func() time.Time
	probeEvery time.Duration

	mu        sync.Mutex
	down      bool
	since     time.Time
	nextProbe time.Time
	lastErr   string
	onRecover []func()

	up        prometheus.Gauge
	outages   prometheus.Counter
	fallbacks prometheus.Counter
}

// OpTimeout bounds one call to the shared backend. Calls are detached from
// the caller's context so that a caller who leaves is not mistaken for an
// outage.
const OpTimeout = time.Second

// DefaultProbeEvery is how often an unreachable backend is tried again.
const DefaultProbeEvery = time.Second

// NewOutage returns an Outage that logs to log (nil: discard) and registers
// its metrics with reg (nil: none): khproxy_redis_up,
// khproxy_redis_outages_total and khproxy_redis_fallbacks_total.
func NewOutage(log *slog.Logger, reg prometheus.Registerer) (*Outage, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := &Outage{
		log:        log,
		now:        time.Now,
		probeEvery: DefaultProbeEvery,
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "khproxy_redis_up",
			Help: "1 while the shared state (Redis) is reachable, 0 during an outage (khproxy then uses its local state).",
		}),
		outages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "khproxy_redis_outages_total",
			Help: "Outages of the shared state (Redis): each began with a failed call after a successful one.",
		}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "khproxy_redis_fallbacks_total",
			Help: "Operations served from khproxy's local state because the shared state (Redis) was unreachable.",
		}),
	}
	o.up.Set(1)
	if err := register(reg, o.up, o.outages, o.fallbacks); err != nil {
		return nil, err
	}
	return o, nil
}

// OnRecover adds f, run in its own goroutine each time an outage ends.
func (o *Outage) OnRecover(f func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.onRecover = append(o.onRecover, f)
}

// Down reports whether an outage is going on.
func (o *Outage) Down() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.down
}

// Since returns when the current outage began; the zero time when the
// backend is reachable.
func (o *Outage) Since() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.down {
		return time.Time{}
	}
	return o.since
}

// try runs f against the shared backend with a detached, bounded context
// unless an outage says not to, and reports whether it succeeded. Failures
// are recorded; the caller then uses its local state.
func (o *Outage) try(ctx context.Context, f func(context.Context) error) bool {
	ok := o.peek(ctx, f)
	if !ok {
		o.fallbacks.Inc()
	}
	return ok
}

// peek is try for readers that serve no request, such as a metrics scrape:
// its fallbacks are not counted.
func (o *Outage) peek(ctx context.Context, f func(context.Context) error) bool {
	if !o.attempt() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), OpTimeout)
	defer cancel()
	err := f(ctx)
	o.record(err)
	return err == nil
}

// attempt reports whether the backend should be called now.
func (o *Outage) attempt() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.down {
		return true
	}
	if now := o.now(); !now.Before(o.nextProbe) {
		o.nextProbe = now.Add(o.probeEvery)
		return true
	}
	return false
}

func (o *Outage) record(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err != nil && !o.down:
		o.down, o.since, o.lastErr = true, o.now(), err.Error()
		o.nextProbe = o.since.Add(o.probeEvery)
		o.outages.Inc()
		o.up.Set(0)
		o.log.Warn("shared state (Redis) unreachable: using local rate limit, retry memory and requests in flight until it is back", "error", err)
	case err != nil:
		o.lastErr = err.Error()
	case o.down:
		o.down = false
		o.up.Set(1)
		o.log.Info("shared state (Redis) reachable again: using it", "outage", o.now().Sub(o.since), "last_error", o.lastErr)
		for _, f := range o.onRecover {
			go f()
		}
	}
}

// register registers every collector with reg, which may be nil (the
// collectors then measure without being exposed), as package admin
// describes.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return errors.Join(errors.New("ratelimit: registering metrics"), err)
		}
	}
	return nil
}
