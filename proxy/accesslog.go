package proxy

import (
	"crypto/rand"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// accessLog writes the one line per request. Its keys are stable and
// documented in docs/operations.md, Logs (method, route, path, status, duration_ms,
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
	if ex.up.AuthReason != "" && status == http.StatusUnauthorized {
		attrs = append(attrs, slog.String("auth_reason", ex.up.AuthReason))
	}
	if id := traceID(r.Header.Get("Traceparent")); id != "" {
		attrs = append(attrs, slog.String("trace_id", id))
	}
	if ex.err != nil {
		attrs = append(attrs, slog.String("error", ex.err.Error()))
		if ex.err.Kind.Status() >= 500 {
			level = slog.LevelWarn
		}
	} else if upstreamAlarming(status) {
		level = slog.LevelWarn
	}
	p.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// upstreamAlarming reports whether an API answer passed to the caller with
// status is worth a WARN line: a 5xx (after any retries), a 401 (khproxy
// signs every request, so any 401 is its own or its secret's problem) or a
// 429 (the pacing did not keep the key within its limit).
func upstreamAlarming(status int) bool {
	return status >= 500 || status == http.StatusUnauthorized || status == http.StatusTooManyRequests
}

// traceID returns the trace id of a W3C traceparent header
// ("00-<32 hex>-<16 hex>-<2 hex>"), "" when the header is absent or
// malformed, or the id is all zeros. The header itself is forwarded
// unchanged, like tracestate: khproxy joins no trace of its own.
func traceID(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return ""
	}
	if !isLowerHex(parts[0]) || !isLowerHex(parts[1]) || strings.Trim(parts[1], "0") == "" || !isLowerHex(parts[2]) || !isLowerHex(parts[3]) {
		return ""
	}
	if parts[0] == "00" && len(parts) != 4 {
		return ""
	}
	return parts[1]
}

// isLowerHex reports whether s is lowercase hexadecimal digits.
func isLowerHex(s string) bool {
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// RequestIDHeader is the response header that carries khproxy's own id of
// the request, the request_id of every log line about it. The API's
// X-Request-Id passes through unchanged (api_request_id in the log).
const RequestIDHeader = "Khproxy-Request-Id"

// newRequestID returns a fresh request id: 26 random base32 characters.
func newRequestID() string { return rand.Text() }
