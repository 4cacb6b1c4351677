package proxy

import (
	"crypto/rand"
	"log/slog"
	"net/http"
	"time"
)

// accessLog writes the one line per request. Its keys are stable and
// documented in the README (method, route, path, status, duration_ms,
// attempts, idempotency_key, request_id always; the others when they
// apply). status is what the caller got, 499 when it left first;
// upstream_status is the API's last answer.
// It never logs the secret, the signature or the body.
func (p *Proxy) accessLog(r *http.Request, ex *exchange, route string, status int, d time.Duration) {
	level := slog.LevelInfo
	// Room for every attribute: a slice that never grows stays on the stack.
	attrs := append(make([]slog.Attr, 0, 14),
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.String("path", ex.target),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.Int("attempts", ex.up.Attempts),
		slog.String("idempotency_key", ex.idemKey),
		slog.String("request_id", ex.id),
	)
	if ex.apiRequestID != "" {
		attrs = append(attrs, slog.String("api_request_id", ex.apiRequestID))
	}
	if ex.upstreamStatus > 0 {
		attrs = append(attrs, slog.Int("upstream_status", ex.upstreamStatus))
	}
	if ex.keySource != "" {
		attrs = append(attrs, slog.String("idempotency_key_source", ex.keySource))
	}
	if ex.up.RateWait > 0 {
		attrs = append(attrs, slog.Duration("rate_wait", ex.up.RateWait))
	}
	if ex.shared {
		attrs = append(attrs, slog.Bool("shared_answer", true))
	}
	if ex.err != nil {
		attrs = append(attrs, slog.String("error", ex.err.Error()))
		if ex.err.Kind.Status() >= 500 {
			level = slog.LevelWarn
		}
	}
	p.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// RequestIDHeader is the response header that carries khproxy's own id of
// the request, the request_id of every log line about it. The API's
// X-Request-Id passes through unchanged (api_request_id in the log).
const RequestIDHeader = "Khproxy-Request-Id"

// newRequestID returns a fresh request id: 26 random base32 characters.
func newRequestID() string { return rand.Text() }
