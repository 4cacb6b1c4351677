package admin

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/proxy"
)

func TestMetrics(t *testing.T) {
	reg := NewRegistry()
	m, err := NewMetrics(reg, "v1.2.3-test")
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, New(reg))

	// Nothing recorded yet: the pre-made series are there at 0.
	got := testutil.Scrape(t, base+PathMetrics)
	for _, s := range []string{
		`khproxy_idempotency_keys_total{source="auto"}`,
		`khproxy_idempotency_keys_total{source="client"}`,
		`khproxy_idempotency_keys_total{source="reused"}`,
		`khproxy_upstream_attempts_total{reason="first"}`,
		`khproxy_secret_reloads_total{result="ok"}`,
		`khproxy_secret_reloads_total{result="error"}`,
		`khproxy_inflight_requests`,
		`khproxy_clock_offset_seconds`,
	} {
		if v, ok := got[s]; !ok || v != 0 {
			t.Errorf("before any request: %s = %v (present %v), want 0", s, v, ok)
		}
	}

	m.RequestStarted()
	m.RequestStarted()
	m.RequestStarted()
	m.RequestDone("GET", "/v1/services/{id}", 200, "", 250*time.Millisecond)
	m.RequestDone("POST", "/v1/orders", 502, "upstream_unreachable", 2*time.Second)
	m.UpstreamAttempt(proxy.AttemptFirst)
	m.UpstreamAttempt(proxy.AttemptFirst)
	m.UpstreamAttempt("timeout")
	m.IdempotencyKey(proxy.KeyAuto)
	m.IdempotencyKey(proxy.KeyReused)
	m.ClockOffset(-42 * time.Second)
	m.SecretReload(nil)
	m.SecretReload(errors.New("unreadable"))
	m.SecretReload(errors.New("unreadable"))

	got = testutil.Scrape(t, base+PathMetrics)
	want := map[string]float64{
		`khproxy_requests_total{code="200",method="GET",route="/v1/services/{id}"}`:      1,
		`khproxy_requests_total{code="502",method="POST",route="/v1/orders"}`:            1,
		`khproxy_request_duration_seconds_count{method="GET",route="/v1/services/{id}"}`: 1,
		`khproxy_request_duration_seconds_sum{method="GET",route="/v1/services/{id}"}`:   0.25,
		`khproxy_request_duration_seconds_sum{method="POST",route="/v1/orders"}`:         2,
		`khproxy_inflight_requests`:                                                       1,
		`khproxy_errors_total{kind="upstream_unreachable"}`:                               1,
		`khproxy_upstream_attempts_total{reason="first"}`:                                 2,
		`khproxy_upstream_attempts_total{reason="timeout"}`:                               1,
		`khproxy_idempotency_keys_total{source="auto"}`:                                   1,
		`khproxy_idempotency_keys_total{source="client"}`:                                 0,
		`khproxy_idempotency_keys_total{source="reused"}`:                                 1,
		`khproxy_clock_offset_seconds`:                                                    -42,
		`khproxy_secret_reloads_total{result="ok"}`:                                       1,
		`khproxy_secret_reloads_total{result="error"}`:                                    2,
		`khproxy_build_info{goversion="` + runtime.Version() + `",version="v1.2.3-test"}`: 1,
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, w)
		}
	}
	// The registry's runtime collectors are served too.
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("go_goroutines missing: NewRegistry lacks the Go collector")
	}
}

// TestMetricsBoundedLabels: whatever a caller passes, label values come from
// fixed sets.
func TestMetricsBoundedLabels(t *testing.T) {
	reg := NewRegistry()
	m, err := NewMetrics(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, New(reg))
	for _, c := range []struct {
		method, route string
		status        int
	}{
		{"GET", "/v1/services/123", 404},      // a raw path, not a template
		{"FROBNICATE", "/v1/me", 200},         // an unknown method
		{"GET", "/v1/me", 0},                  // no status
		{"GET", "/v1/me", 1000},               // nonsense status
		{"get", strings.Repeat("x", 99), 200}, // both wrong
	} {
		m.RequestStarted()
		m.RequestDone(c.method, c.route, c.status, "", time.Millisecond)
	}
	got := testutil.Scrape(t, base+PathMetrics)
	want := map[string]float64{
		`khproxy_requests_total{code="404",method="GET",route="other"}`:    1,
		`khproxy_requests_total{code="200",method="other",route="/v1/me"}`: 1,
		`khproxy_requests_total{code="other",method="GET",route="/v1/me"}`: 2,
		`khproxy_requests_total{code="200",method="other",route="other"}`:  1,
	}
	n := 0
	for k := range got {
		if strings.HasPrefix(k, "khproxy_requests_total{") {
			n++
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected series %s", k)
			}
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
	if n != len(want) {
		t.Errorf("%d request series, want %d", n, len(want))
	}
}

func TestNewMetricsTwice(t *testing.T) {
	reg := NewRegistry()
	if _, err := NewMetrics(reg, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg, "b"); err == nil {
		t.Error("NewMetrics on a registry that has them already: nil error, want one")
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.RequestStarted()
	m.RequestDone("GET", "/v1/me", 200, "", time.Second)
	m.UpstreamAttempt(proxy.AttemptFirst)
	m.IdempotencyKey(proxy.KeyAuto)
	m.ClockOffset(time.Second)
	m.SecretReload(nil)
}

// BenchmarkRequestDone is what the metrics add to each request: a route
// lookup, two label lookups, a counter and a histogram.
// go test ./admin -run '^$' -bench RequestDone -benchmem
func BenchmarkRequestDone(b *testing.B) {
	m, err := NewMetrics(NewRegistry(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m.RequestStarted()
		m.RequestDone("GET", "/v1/services/{id}", 200, "", 3*time.Millisecond)
	}
}

// TestUpstreamAnswerMetrics: the API's answers by code, 401s by a bounded
// reason, single attempts timed, secret re-reads and requests in doubt.
func TestUpstreamAnswerMetrics(t *testing.T) {
	reg := NewRegistry()
	m, err := NewMetrics(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, New(reg))
	m.UpstreamAttemptDone(503, "", 40*time.Millisecond)
	m.UpstreamAttemptDone(401, "signature_mismatch", 10*time.Millisecond)
	m.UpstreamAttemptDone(401, "", 10*time.Millisecond) // no reason: other
	m.UpstreamAttemptDone(0, "", time.Second)           // no answer: timed only
	m.UpstreamAttemptDone(299, "", time.Millisecond)    // a code first seen
	m.SecretReread(proxy.SecretRereadResults()[0])
	m.RequestsInDoubt(2)
	m.RequestsInDoubt(0)

	got := testutil.Scrape(t, base+PathMetrics)
	want := map[string]float64{
		`khproxy_upstream_responses_total{code="503"}`:                      1,
		`khproxy_upstream_responses_total{code="401"}`:                      2,
		`khproxy_upstream_responses_total{code="299"}`:                      1,
		`khproxy_upstream_responses_total{code="200"}`:                      0,
		`khproxy_upstream_auth_failures_total{reason="signature_mismatch"}`: 1,
		`khproxy_upstream_auth_failures_total{reason="other"}`:              1,
		`khproxy_upstream_auth_failures_total{reason="bad_key"}`:            0,
		`khproxy_upstream_attempt_duration_seconds_count`:                   5,
		`khproxy_upstream_attempt_duration_seconds_sum`:                     1.061,
		`khproxy_secret_rereads_total{result="changed"}`:                    1,
		`khproxy_secret_rereads_total{result="unchanged"}`:                  0,
		`khproxy_shutdown_requests_in_doubt_total`:                          2,
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g < w-1e-9 || g > w+1e-9 {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, w)
		}
	}
	if v, ok := got[`khproxy_upstream_responses_total{code="0"}`]; ok {
		t.Errorf("a missing answer was counted as code 0: %v", v)
	}
}
