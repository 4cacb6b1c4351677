package proxy

import (
	"net/http"
	"time"

	"khproxy/apiroute"
	"khproxy/proxy/upstream"
)

// Metrics receives what the proxy measures; Options.Metrics nil means
// nothing is measured. Every label value the proxy passes comes from a fixed
// set: methods as clients sent them (the implementation bounds them), routes
// from package apiroute's templates, kinds from the Kind table, reasons from
// AttemptFirst and the retry reasons, sources from the KeySource constants.
// Implementations must be safe for concurrent use; khproxy uses
// admin.Metrics, which exposes them to Prometheus.
type Metrics interface {
	// RequestStarted is called when a request arrives; RequestDone follows
	// once it has been answered.
	RequestStarted()
	// RequestDone reports a request's method, route template, status and
	// the time it took; kind is the Kind khproxy answered with itself, ""
	// when the answer is the API's.
	RequestDone(method, route string, status int, kind string, d time.Duration)
	// IdempotencyKey reports the source of the key a request was answered
	// with (KeyAuto, KeyClient or KeyReused), once per request that had
	// one.
	IdempotencyKey(source string)
	// Metrics are the upstream attempt loop's measurements, which the
	// proxy hands to package upstream: each signed attempt sent to the
	// API (UpstreamAttempt, with AttemptFirst or the reason it is a
	// retry) and its end (UpstreamAttemptDone: the API's status, 0 for no
	// answer, a 401's reason, one of AuthReasons), the learned offset of
	// the API's clock (ClockOffset), and each re-read of KH_SECRET_FILE
	// after a 401 signature_mismatch (SecretReread, with one of
	// SecretRereadResults).
	upstream.Metrics
}

// AttemptFirst is the reason of each request's first upstream attempt.
const AttemptFirst = upstream.AttemptFirst

// AttemptReasons returns every reason Metrics.UpstreamAttempt is given.
func AttemptReasons() []string { return upstream.AttemptReasons() }

// AuthReasonOther is the 401 reason of an answer whose reason is missing or
// not in the spec's list.
const AuthReasonOther = upstream.AuthReasonOther

// AuthReasons returns every 401 reason Metrics.UpstreamAttemptDone is given.
func AuthReasons() []string { return upstream.AuthReasons() }

// SecretRereadResults returns every result Metrics.SecretReread is given.
func SecretRereadResults() []string { return upstream.SecretRereadResults() }

// Sources of a request's Idempotency-Key.
const (
	KeyAuto   = "auto"   // made by khproxy for an idempotent route
	KeyClient = "client" // sent by the client
	KeyReused = "reused" // the key of an identical request that was in flight or unanswered
)

// noMetrics measures nothing: upstream's no-op Metrics and the proxy's own
// three methods.
type noMetrics struct{ upstream.NoMetrics }

func (noMetrics) RequestStarted()                                        {}
func (noMetrics) RequestDone(string, string, int, string, time.Duration) {}
func (noMetrics) IdempotencyKey(string)                                  {}

// observe reports an answered request to the metrics.
func (p *Proxy) observe(r *http.Request, ex *exchange, route string, status int, d time.Duration) {
	kind := ""
	if ex.err != nil {
		kind = string(ex.err.Kind)
	}
	p.metrics.RequestDone(r.Method, route, status, kind, d)
	if ex.keySource != "" {
		p.metrics.IdempotencyKey(ex.keySource)
	}
}

// routeOf is the route template of the exchange's target, apiroute.Other
// when there is none.
func routeOf(ex *exchange) string { return apiroute.Of(ex.target) }
