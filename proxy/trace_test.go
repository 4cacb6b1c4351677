package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"khproxy/internal/testutil"
)

// TestTraceContextForwarded: a caller's traceparent and tracestate reach the
// API unchanged (khproxy joins no trace of its own), and the access log
// carries the trace id of a valid traceparent and nothing for a malformed
// one.
func TestTraceContextForwarded(t *testing.T) {
	const (
		traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		tracestate  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
	)
	tests := []struct {
		name        string
		traceparent string
		wantTraceID any // nil: no trace_id key
	}{
		{"valid", traceparent, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"future version with more fields", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"uppercase", strings.ToUpper(traceparent), nil},
		{"all-zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", nil},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", nil},
		{"version 00 with more fields", traceparent + "-x", nil},
		{"short", "00-4bf92f35-00f067aa0ba902b7-01", nil},
		{"junk", "hello", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			resp, _ := h.do(t, "GET", "/v1/me", nil, http.Header{"Traceparent": {tt.traceparent}, "Tracestate": {tracestate}})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			a := h.up.last(t)
			if got := a.Header.Values("Traceparent"); len(got) != 1 || got[0] != tt.traceparent {
				t.Errorf("traceparent upstream = %q, want %q unchanged", got, tt.traceparent)
			}
			if got := a.Header.Values("Tracestate"); len(got) != 1 || got[0] != tracestate {
				t.Errorf("tracestate upstream = %q, want %q unchanged", got, tracestate)
			}
			var line map[string]any
			testutil.WaitFor(t, "the access log line", func() bool {
				for l := range strings.SplitSeq(h.logs.String(), "\n") {
					if json.Unmarshal([]byte(l), &line) == nil && line["msg"] == "request" {
						return true
					}
				}
				return false
			})
			if got := line["trace_id"]; got != tt.wantTraceID {
				t.Errorf("trace_id = %v, want %v", got, tt.wantTraceID)
			}
		})
	}
}
