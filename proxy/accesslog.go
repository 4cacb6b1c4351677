package proxy

import (
	"log/slog"
	"net/http"
	"time"
)

// accessLog writes the one line per request. Its keys are stable and
// documented in the README (method, route, path, status, duration_ms,
// attempts, idempotency_key, request_id always; the others when they apply).
// It never logs the secret, the signature or the body.
func (p *Proxy) accessLog(r *http.Request, ex *exchange, route string, status int, d time.Duration) {
	level := slog.LevelInfo
	// Room for every attribute: a slice that never grows stays on the stack.
	attrs := append(make([]slog.Attr, 0, 12),
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.String("path", ex.target),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.Int("attempts", ex.up.Attempts),
		slog.String("idempotency_key", ex.idemKey),
		slog.String("request_id", ex.requestID),
	)
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
