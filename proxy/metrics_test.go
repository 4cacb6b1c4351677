package proxy_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/emulator"
	"khproxy/internal/testutil"
	"khproxy/proxy"
)

// recordedMetrics is a proxy.Metrics that keeps every call as a line.
type recordedMetrics struct {
	mu       sync.Mutex
	calls    []string
	inflight int
}

func (m *recordedMetrics) add(format string, a ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, fmt.Sprintf(format, a...))
}

func (m *recordedMetrics) RequestStarted() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inflight++
}

func (m *recordedMetrics) RequestDone(method, route string, status int, kind string, d time.Duration) {
	m.mu.Lock()
	m.inflight--
	m.mu.Unlock()
	if d < 0 {
		m.add("negative duration")
	}
	m.add("done %s %s %d %q", method, route, status, kind)
}

func (m *recordedMetrics) UpstreamAttempt(reason string) { m.add("attempt %s", reason) }
func (m *recordedMetrics) IdempotencyKey(source string)  { m.add("key %s", source) }
func (m *recordedMetrics) ClockOffset(d time.Duration) {
	m.add("clock %s", d.Round(time.Minute)) // the API's Date has whole seconds
}

// take waits until n request lines were recorded, then returns and clears
// the calls.
func (m *recordedMetrics) take(t testing.TB, n int) []string {
	t.Helper()
	testutil.WaitFor(t, fmt.Sprintf("%d finished requests", n), func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		done := 0
		for _, c := range m.calls {
			if strings.HasPrefix(c, "done ") {
				done++
			}
		}
		return done == n && m.inflight == 0
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	calls := m.calls
	m.calls = nil
	return calls
}

// TestMetricsCalls drives the proxy against the emulator and checks what it
// reports, call by call.
func TestMetricsCalls(t *testing.T) {
	m := &recordedMetrics{}
	h := newEmuHarness(t, func(o *proxy.Options) {
		o.Metrics = m
		o.RetryMax = 1
		o.MaxBodyBytes = 1 << 10
	})
	tests := []struct {
		name   string
		faults emulator.Faults
		method string
		path   string
		body   string
		header http.Header
		want   []string
	}{
		{"a template route", emulator.Faults{}, "GET", "/v1/products/42?x=1", "", nil,
			[]string{"attempt first", `done GET /v1/products/{id} 200 ""`}},
		{"an unknown path", emulator.Faults{}, "GET", "/v1/services/5001/secrets%2Fx", "", nil,
			[]string{"attempt first", `done GET other 404 ""`}},
		{"refused by khproxy", emulator.Faults{}, "POST", "/v1/orders", strings.Repeat("x", 2<<10), nil,
			[]string{`done POST /v1/orders 413 "body_too_large"`}},
		{"the client's key", emulator.Faults{}, "POST", "/v1/orders", testutil.OrderBody, http.Header{"Idempotency-Key": {"client-key-1"}},
			[]string{"attempt first", `done POST /v1/orders 201 ""`, "key client"}},
		{"retried", emulator.Faults{FailCount: 1, FailStatus: 503}, "GET", "/v1/me", "", nil,
			[]string{"attempt first", "attempt unavailable", `done GET /v1/me 200 ""`}},
		// Two 503s exhaust RetryMax: the order is in doubt, the key
		// is kept for the caller's retry...
		{"unanswered", emulator.Faults{FailCount: 2, FailStatus: 503}, "POST", "/v1/orders", testutil.OrderBody, nil,
			[]string{"attempt first", "attempt unavailable", `done POST /v1/orders 503 "in_doubt"`, "key auto"}},
		// ...which reuses it.
		{"the caller's retry", emulator.Faults{}, "POST", "/v1/orders", testutil.OrderBody, nil,
			[]string{"attempt first", `done POST /v1/orders 201 ""`, "key reused"}},
		// Last: the proxy keeps the learned offset.
		{"clock skew", emulator.Faults{ClockOffset: -10 * time.Minute}, "GET", "/v1/me", "", nil,
			[]string{"attempt first", "clock -10m0s", "attempt timestamp_out_of_window", `done GET /v1/me 200 ""`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := h.emu.SetFaults(tt.faults); err != nil {
				t.Fatal(err)
			}
			h.must(t, tt.method, tt.path, tt.body, tt.header)
			if got := m.take(t, 1); !slices.Equal(got, tt.want) {
				t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
