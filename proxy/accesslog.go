package proxy

import (
	"log/slog"
	"net/http"
	"time"
)

// accessLog writes the one line per request. It never logs the secret, the
// signature or the body.
func (p *Proxy) accessLog(r *http.Request, ex *exchange, status int, d time.Duration) {
	level := slog.LevelInfo
	// Room for every attribute: a slice that never grows stays on the stack.
	attrs := append(make([]slog.Attr, 0, 11),
		slog.String("method", r.Method),
		slog.String("path", ex.target),
		slog.Int("status", status),
		slog.Duration("duration", d),
	)
	if ex.idemKey != "" {
		attrs = append(attrs, slog.String("idempotency_key", ex.idemKey), slog.Bool("auto_key", ex.autoKey))
	}
	if ex.requestID != "" {
		attrs = append(attrs, slog.String("request_id", ex.requestID))
	}
	if ex.attempts > 1 {
		attrs = append(attrs, slog.Int("attempts", ex.attempts))
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
