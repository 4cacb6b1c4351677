package admin

import (
	"errors"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"khproxy/apiroute"
	"khproxy/proxy"
)

// NewRegistry returns the registry a khproxy process shares between its
// packages: empty but for the Go runtime and process collectors (memory
// against GOMEMLIMIT, file descriptors, CPU). Each package registers its own
// collectors on it; /metrics serves it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// NewUpstreamUp creates the gauge khproxy_upstream_up on reg, for the
// Poller of the API's health (PollOptions.Up). It fails when the gauge is
// already registered there.
func NewUpstreamUp(reg prometheus.Registerer) (prometheus.Gauge, error) {
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "khproxy_upstream_up",
		Help: "1 when the API's last unsigned GET /v1/health answered 2xx or 429, else 0 (the error is logged); polled every KH_UPSTREAM_CHECK_INTERVAL. Not part of /readyz.",
	})
	if err := reg.Register(up); err != nil {
		return nil, errors.Join(errors.New("admin: registering metrics"), err)
	}
	return up, nil
}

// Metrics is what the proxy reports to.
var _ proxy.Metrics = (*Metrics)(nil)

// durationBuckets cover a fast API answer up to a request that used the
// whole default retry budget (30 s) and then some.
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Metrics are the proxy's own metrics, registered on a caller's registry.
// Label values are bounded whatever clients send: methods and routes are
// mapped through package apiroute, status codes outside 100-599 count as
// "other". Create it with NewMetrics; it is safe for concurrent use. A nil
// *Metrics records nothing.
type Metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	inflight      prometheus.Gauge
	errors        *prometheus.CounterVec
	attempts      *prometheus.CounterVec
	idemKeys      *prometheus.CounterVec
	clockOffset   prometheus.Gauge
	secretReloads *prometheus.CounterVec

	answers         *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	attemptDuration prometheus.Histogram
	secretRereads   *prometheus.CounterVec
	inDoubt         prometheus.Counter
}

// apiCodes are the API's status codes whose series exist from the start:
// those spec §6 lists, the success codes and the gateway errors. Others
// appear when first seen.
var apiCodes = []int{200, 201, 400, 401, 402, 403, 404, 409, 429, 500, 502, 503, 504}

// attemptBuckets cover one attempt, from a fast answer up to the default
// KH_UPSTREAM_TIMEOUT (30 s).
var attemptBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics creates the proxy's metrics and khproxy_build_info (carrying
// version) on reg. It fails when any of them is already registered there.
func NewMetrics(reg prometheus.Registerer, version string) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khproxy_requests_total",
			Help: "Requests answered, by method, API route template (or other) and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "khproxy_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, retries included, by method and API route template.",
			Buckets: durationBuckets,
		}, []string{"method", "route"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "khproxy_inflight_requests",
			Help: "Requests being served now.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khproxy_errors_total",
			Help: "Requests that khproxy answered itself instead of the API, by kind (the problem type's last part).",
		}, []string{"kind"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khproxy_upstream_attempts_total",
			Help: `Requests sent to the API, by reason: "first" for each request's first attempt, else why it was retried.`,
		}, []string{"reason"}),
		idemKeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khproxy_idempotency_keys_total",
			Help: "Requests sent with an Idempotency-Key, by its source: auto (made by khproxy), client, reused (of an identical unanswered or in-flight request).",
		}, []string{"source"}),
		clockOffset: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "khproxy_clock_offset_seconds",
			Help: "The API's clock minus this machine's, as learned from a timestamp_out_of_window answer; signatures add it. Non-zero means: fix this machine's clock.",
		}),
		secretReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "khproxy_secret_reloads_total",
			Help: "Changes of KH_SECRET_FILE, by result: ok (the new secret is in use) or error (the last good secret stays in use).",
		}, []string{"result"}),
	}
	m.answers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "khproxy_upstream_responses_total",
		Help: "Answers from the API, one per attempt (retried ones included), by status code (other outside 100-599).",
	}, []string{"code"})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "khproxy_upstream_auth_failures_total",
		Help: "The API's 401 answers, one per attempt, by reason (spec section 6; other when missing or unknown).",
	}, []string{"reason"})
	m.attemptDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "khproxy_upstream_attempt_duration_seconds",
		Help:    "Time of one attempt at the API, from sending to response headers or failure: no pacing, backoff or retries.",
		Buckets: attemptBuckets,
	})
	m.secretRereads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "khproxy_secret_rereads_total",
		Help: "Immediate re-reads of KH_SECRET_FILE after a 401 signature_mismatch, by result: changed (the request was retried once with the new secret), unchanged, error.",
	}, []string{"result"})
	m.inDoubt = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "khproxy_shutdown_requests_in_doubt_total",
		Help: "Requests sent to the API whose answer a shutdown did not wait for: each may or may not have taken effect (each is logged).",
	})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "khproxy_build_info",
		Help:        "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	// Series that exist from the start, so that rate() and alerts see 0
	// rather than nothing.
	for _, s := range []string{proxy.KeyAuto, proxy.KeyClient, proxy.KeyReused} {
		m.idemKeys.WithLabelValues(s)
	}
	for _, r := range proxy.AttemptReasons() {
		m.attempts.WithLabelValues(r)
	}
	for _, k := range proxy.Kinds() {
		m.errors.WithLabelValues(string(k))
	}
	for _, c := range apiCodes {
		m.answers.WithLabelValues(code(c))
	}
	for _, r := range proxy.AuthReasons() {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range proxy.SecretRereadResults() {
		m.secretRereads.WithLabelValues(r)
	}
	m.secretReloads.WithLabelValues("ok")
	m.secretReloads.WithLabelValues("error")

	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight, m.errors, m.attempts, m.idemKeys, m.clockOffset, m.secretReloads,
		m.answers, m.authFailures, m.attemptDuration, m.secretRereads, m.inDoubt, build} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(errors.New("admin: registering metrics"), err)
	}
	return m, nil
}

// RequestStarted counts a request in flight; RequestDone must follow.
func (m *Metrics) RequestStarted() {
	if m != nil {
		m.inflight.Inc()
	}
}

// RequestDone records a request answered with status after d. route should
// be a template of package apiroute; anything else counts as other. kind is
// the proxy's error kind when khproxy answered itself, else "".
func (m *Metrics) RequestDone(method, route string, status int, kind string, d time.Duration) {
	if m == nil {
		return
	}
	method = apiroute.Method(method)
	if !knownRoutes[route] {
		route = apiroute.Other
	}
	m.inflight.Dec()
	m.requests.WithLabelValues(method, route, code(status)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
	if kind != "" {
		m.errors.WithLabelValues(kind).Inc()
	}
}

// UpstreamAttempt counts one attempt sent to the API: proxy.AttemptFirst,
// or the reason for a retry, which must come from a fixed set.
func (m *Metrics) UpstreamAttempt(reason string) {
	if m != nil {
		m.attempts.WithLabelValues(reason).Inc()
	}
}

// IdempotencyKey counts a request sent with a key from source
// (proxy.KeyAuto, proxy.KeyClient or proxy.KeyReused).
func (m *Metrics) IdempotencyKey(source string) {
	if m != nil {
		m.idemKeys.WithLabelValues(source).Inc()
	}
}

// ClockOffset sets the learned offset of the API's clock from ours.
func (m *Metrics) ClockOffset(d time.Duration) {
	if m != nil {
		m.clockOffset.Set(d.Seconds())
	}
}

// UpstreamAttemptDone records one attempt's end: status 0 (no answer) only
// in the duration, a 401 also by its reason, which must be one of
// proxy.AuthReasons.
func (m *Metrics) UpstreamAttemptDone(status int, authReason string, d time.Duration) {
	if m == nil {
		return
	}
	m.attemptDuration.Observe(d.Seconds())
	if status == 0 {
		return
	}
	m.answers.WithLabelValues(code(status)).Inc()
	if status == 401 {
		if authReason == "" {
			authReason = proxy.AuthReasonOther
		}
		m.authFailures.WithLabelValues(authReason).Inc()
	}
}

// SecretReread counts a re-read of the secret file after a 401
// signature_mismatch, with one of proxy.SecretRereadResults.
func (m *Metrics) SecretReread(result string) {
	if m != nil {
		m.secretRereads.WithLabelValues(result).Inc()
	}
}

// RequestsInDoubt counts n requests that a shutdown cut after they were
// sent to the API.
func (m *Metrics) RequestsInDoubt(n int) {
	if m != nil && n > 0 {
		m.inDoubt.Add(float64(n))
	}
}

// SecretReload counts a change of the secret file: err nil when the new
// secret was loaded.
func (m *Metrics) SecretReload(err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.secretReloads.WithLabelValues(result).Inc()
}

var knownRoutes = func() map[string]bool {
	known := map[string]bool{apiroute.Other: true}
	for _, t := range apiroute.Templates() {
		known[t] = true
	}
	return known
}()

// code is the status code label: the number, or other outside 100-599.
func code(status int) string {
	if status < 100 || status > 599 {
		return apiroute.Other
	}
	return strconv.Itoa(status)
}
