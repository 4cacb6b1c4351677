// Package admin is khproxy's admin listener: liveness and readiness probes for
// Kubernetes and Prometheus metrics. It is served on its own address, never
// on the signing listener, which stays a transparent proxy.
//
//   - /healthz (liveness) answers 200 while the process serves HTTP at all.
//   - /readyz (readiness) answers 200 once Started was called, until
//     Stopping is, while every Check passes; otherwise 503 with a one-line
//     reason. khproxy gives it only checks of its own state: a service it
//     depends on is watched by a Poller into a gauge, never into readiness.
//   - /metrics exposes a prometheus.Gatherer (one registry built by the
//     caller and handed to every package that has metrics).
//
// The package knows nothing of signing: readiness checks are what the caller
// gives it, and Metrics implements the proxy's Metrics interface.
//
// # How khproxy's metrics are wired
//
// There is one way, and this is where it is written down. run.go builds one
// registry with NewRegistry and serves it on /metrics; every package that
// measures something takes it as a prometheus.Registerer (the way
// oauth2-proxy's NewMetricsHandler(registerer, gatherer) does) and
// registers its own collectors on it:
//
//   - a constructor that takes reg: NewMetrics(reg) returning a *Metrics
//     whose nil value measures nothing (NewMetrics here, which also takes
//     the version, guard.NewMetrics, webhook.NewMetrics), or one that
//     returns a single collector (NewUpstreamUp here); or, where the
//     package's constructor takes Options, an Options.Registerer field
//     (audit.Options, ratelimit.Options; ratelimit.NewOutage takes it as an
//     argument), nil meaning the collectors measure but are not
//     registered;
//   - every metric is named khproxy_* and has its help text where it is
//     built; label values come from fixed sets, and the series of each known
//     value are created at zero before registering, so that rate() and
//     alerts see 0 rather than nothing (TestSeriesAtZeroOnFirstScrape and
//     TestMetricsLint in the main package check both);
//   - a registration that fails (a name registered twice) is an error of
//     the constructor, wrapped with the package's name; nothing panics.
//
// The main package builds no collector of its own. Packages proxy and
// proxy/upstream import no Prometheus: they report through their Metrics
// interfaces (upstream's is part of the proxy's), which Metrics here
// implements on the registry; nil there means the no-op upstream.NoMetrics.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The admin listener's paths.
const (
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathMetrics = "/metrics"
)

// Paths returns every path the admin handler answers, for manifests and
// their tests.
func Paths() []string { return []string{PathHealthz, PathReadyz, PathMetrics} }

// Check is one condition of readiness. Check returns nil when the condition
// holds, else an error whose text (made one line) is the reason /readyz
// gives; it should name what failed (see Named). It is called once per
// /readyz probe with a context bounded by CheckTimeout, concurrently with
// other probes: it must be cheap and safe for concurrent use. A condition
// that needs a network round trip belongs in a Poller (which is a Check
// too, though khproxy does not make readiness depend on one).
type Check interface {
	Check(ctx context.Context) error
}

// CheckFunc adapts a function to Check.
type CheckFunc func(ctx context.Context) error

// Check calls f.
func (f CheckFunc) Check(ctx context.Context) error { return f(ctx) }

// Named returns a Check whose errors start with name, for checks (such as a
// store's Ping) whose errors do not say what they are about.
func Named(name string, c Check) Check {
	return CheckFunc(func(ctx context.Context) error {
		if err := c.Check(ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// CheckTimeout bounds each Check during a /readyz probe.
const CheckTimeout = time.Second

// Lifecycle states.
const (
	starting int32 = iota
	serving
	stopping
)

// Admin serves the probes and metrics. Create it with New; it is safe for
// concurrent use.
type Admin struct {
	gatherer prometheus.Gatherer
	checks   []Check
	state    atomic.Int32
}

// New returns an Admin that is not ready until Started. g is what /metrics
// exposes; nil serves no /metrics (404). checks must all pass for /readyz.
func New(g prometheus.Gatherer, checks ...Check) *Admin {
	return &Admin{gatherer: g, checks: checks}
}

// Started marks the proxy as serving: /readyz answers 200 when the checks
// pass. It has no effect after Stopping.
func (a *Admin) Started() { a.state.CompareAndSwap(starting, serving) }

// Stopping marks the proxy as shutting down: /readyz answers 503 from now
// on, so that Kubernetes takes the pod out of its endpoints, while /healthz
// still answers 200.
func (a *Admin) Stopping() { a.state.Store(stopping) }

// Ready returns nil when /readyz would answer 200, else the reason.
func (a *Admin) Ready(ctx context.Context) error {
	switch a.state.Load() {
	case starting:
		return errors.New("starting")
	case stopping:
		return errors.New("shutting down")
	}
	for _, c := range a.checks {
		cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
		err := c.Check(cctx)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// Handler returns the admin listener's handler: the three paths for GET and
// HEAD, 405 for other methods on them, 404 elsewhere.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET "+PathReadyz, func(w http.ResponseWriter, r *http.Request) {
		if err := a.Ready(r.Context()); err != nil {
			text(w, http.StatusServiceUnavailable, "not ready: "+oneLine(err.Error()))
			return
		}
		text(w, http.StatusOK, "ok")
	})
	if a.gatherer != nil {
		mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(a.gatherer, promhttp.HandlerOpts{
			// A collector that fails leaves the others visible, and
			// the failure shows in the exposition.
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	return mux
}

// text writes a short plain-text answer that no cache keeps.
func text(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// oneLine joins the lines of s (errors.Join makes several) with "; ".
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
}
