package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"khproxy/signer"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, value string
		want        time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "7", 7 * time.Second},
		{"seconds with spaces", "  3 ", 3 * time.Second},
		{"zero seconds", "0", 0},
		{"negative seconds", "-5", 0},
		{"HTTP date ahead", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"HTTP date past", now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"HTTP date now", now.Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
		{"fraction", "1.5", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.value != "" {
				h.Set("Retry-After", tt.value)
			}
			if got := retryAfter(h, now); got != tt.want {
				t.Errorf("retryAfter(%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

// TestBackoff checks the bounds of the jittered wait before each retry:
// half to all of base·2ⁿ, capped at backoffMax.
func TestBackoff(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 5, 6, 10, 16, 40, 1000} {
		t.Run(time.Duration(n).String(), func(t *testing.T) {
			full := backoffMax
			if n < 16 && backoffBase<<n < backoffMax {
				full = backoffBase << n
			}
			for range 200 {
				if d := backoff(n); d < full/2 || d > full {
					t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, full/2, full)
				}
			}
		})
	}
}

func TestSafeToRepeat(t *testing.T) {
	tests := []struct {
		method, key string
		want        bool
	}{
		{"GET", "", true},
		{"HEAD", "", true},
		{"PUT", "", true},
		{"DELETE", "", true},
		{"OPTIONS", "", true},
		{"POST", "", false},
		{"PATCH", "", false},
		{"POST", "k1", true},
		{"PATCH", "k1", true},
		{"get", "", false}, // methods are case-sensitive
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.key, func(t *testing.T) {
			if got := safeToRepeat(tt.method, tt.key); got != tt.want {
				t.Errorf("safeToRepeat(%q, %q) = %v, want %v", tt.method, tt.key, got, tt.want)
			}
		})
	}
}

func TestSpendsBudget(t *testing.T) {
	tests := []struct {
		method, target string
		want           bool
	}{
		{"GET", "/v1/health", false},
		{"HEAD", "/v1/health", false},
		{"GET", "/v1/health?x=1", false},
		{"POST", "/v1/health", true},
		{"GET", "/v1/health/x", true},
		{"GET", "/v1/products", true},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			if got := spendsBudget(tt.method, tt.target); got != tt.want {
				t.Errorf("spendsBudget(%q, %q) = %v, want %v", tt.method, tt.target, got, tt.want)
			}
		})
	}
}

// TestShouldRetry is the table of the retry rules: which finished attempts
// are retried, why, and how long the upstream asked to wait.
func TestShouldRetry(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tr, err := New(Options{Signer: &signer.Signer{Key: "k", Secret: signer.StaticSecret("s")}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("connection reset by peer")
	tests := []struct {
		name      string
		method    string
		key       string
		gone      bool // the client left
		err       error
		connected bool
		status    int
		header    map[string]string
		body      string
		want      retryReason
		wantWait  time.Duration
	}{
		{name: "client gone", method: "GET", gone: true, err: context.Canceled, connected: true, want: noRetry},
		{name: "signing failed", method: "GET", err: &SignError{Err: broken}, want: noRetry},
		{name: "no connection, keyless POST", method: "POST", err: broken, want: retryConnect},
		{name: "broken after connecting, keyless POST", method: "POST", err: broken, connected: true, want: noRetry},
		{name: "broken after connecting, POST with key", method: "POST", key: "k1", err: broken, connected: true, want: retryTransport},
		{name: "broken after connecting, GET", method: "GET", err: broken, connected: true, want: retryTransport},
		{name: "timeout, GET", method: "GET", err: errors.Join(ErrAttemptTimeout, context.Canceled), connected: true, want: retryTimeout},
		{name: "timeout, keyless PATCH", method: "PATCH", err: ErrAttemptTimeout, connected: true, want: noRetry},
		{name: "200", method: "GET", status: 200, want: noRetry},
		{name: "500", method: "GET", status: 500, want: noRetry},
		{name: "503 GET", method: "GET", status: 503, want: retryUnavailable},
		{name: "502 GET with Retry-After", method: "GET", status: 502, header: map[string]string{"Retry-After": "2"}, want: retryUnavailable, wantWait: 2 * time.Second},
		{name: "504 POST with key", method: "POST", key: "k1", status: 504, want: retryUnavailable},
		{name: "503 keyless POST", method: "POST", status: 503, want: noRetry},
		{name: "429 with Retry-After", method: "GET", status: 429, header: map[string]string{"Retry-After": "3"}, want: retryRateLimited, wantWait: 3 * time.Second},
		{name: "429 without Retry-After", method: "GET", status: 429, want: noRetry},
		{name: "429 keyless POST", method: "POST", status: 429, header: map[string]string{"Retry-After": "3"}, want: noRetry},
		{name: "401 replay_detected, keyless POST", method: "POST", status: 401, body: `{"type":"auth_failed","reason":"replay_detected"}`, want: retryReplay},
		{name: "401 timestamp_out_of_window", method: "POST", status: 401, body: `{"reason":"timestamp_out_of_window"}`, want: retryClockSkew},
		{name: "401 bad signature", method: "GET", status: 401, body: `{"reason":"invalid_signature"}`, want: noRetry},
		{name: "401 not JSON", method: "GET", status: 401, body: `replay_detected`, want: noRetry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.gone {
				cancel()
			}
			req, err := http.NewRequestWithContext(ctx, tt.method, "http://upstream.invalid/v1/x", nil)
			if err != nil {
				t.Fatal(err)
			}
			var resp *http.Response
			if tt.err == nil {
				resp = &http.Response{StatusCode: tt.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tt.body))}
				for k, v := range tt.header {
					resp.Header.Set(k, v)
				}
			}
			why, wait := tr.shouldRetry(req, &Call{IdempotencyKey: tt.key}, resp, tt.err, tt.connected)
			if why != tt.want || wait != tt.wantWait {
				t.Errorf("shouldRetry = %q, %v; want %q, %v", why, wait, tt.want, tt.wantWait)
			}
			if resp != nil {
				// The answer may still be passed through: its body
				// must be whole after the rules read it.
				if b, _ := io.ReadAll(resp.Body); string(b) != tt.body {
					t.Errorf("body after shouldRetry = %q, want %q", b, tt.body)
				}
			}
		})
	}
}

// TestInDoubt: only 2xx and a 4xx other than 408, 409 request_in_progress,
// 425 and 429 settle a key.
func TestInDoubt(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   bool
	}{
		{200, "", false}, {201, `{"id":1}`, false}, {204, "", false},
		{400, `{"type":"validation_failed"}`, false}, {401, `{"reason":"signature_mismatch"}`, false},
		{404, "", false}, {422, "", false},
		{409, `{"type":"idempotency_conflict","reason":"body_mismatch"}`, false},
		{409, `{"type":"idempotency_conflict","reason":"request_in_progress"}`, true},
		{409, `{"type":"https://example.com/problems/request_in_progress"}`, true},
		{408, "", true}, {425, "", true}, {429, "", true},
		{500, "", true}, {501, "", true}, {502, "", true}, {503, "", true}, {504, "", true},
		{302, "", true},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status)+tt.body, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Body: io.NopCloser(strings.NewReader(tt.body))}
			if got := InDoubt(resp); got != tt.want {
				t.Errorf("InDoubt(%d %s) = %v, want %v", tt.status, tt.body, got, tt.want)
			}
			if b, _ := io.ReadAll(resp.Body); string(b) != tt.body {
				t.Errorf("body after InDoubt = %q, want it untouched", b)
			}
		})
	}
}

// offsetMetrics records the clock offsets reported; the rest it discards.
type offsetMetrics struct {
	NoMetrics
	offsets []time.Duration
}

func (m *offsetMetrics) ClockOffset(d time.Duration) { m.offsets = append(m.offsets, d) }

// TestLearnSkewAgreeingClocks: Date is truncated to the second; clocks that
// agree must give an offset of 0, whatever the fraction of our second.
func TestLearnSkewAgreeingClocks(t *testing.T) {
	base := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		upOff time.Duration // the upstream clock minus ours
		frac  time.Duration // our clock's fraction of a second
		want  time.Duration
	}{
		{"agree, early in the second", 0, 100 * time.Millisecond, 0},
		{"agree, late in the second", 0, 900 * time.Millisecond, 0},
		{"upstream 200 s behind, late", -200 * time.Second, 900 * time.Millisecond, -200 * time.Second},
		{"upstream 400 s ahead, early", 400 * time.Second, 100 * time.Millisecond, 400 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := base.Add(tt.frac)
			m := &offsetMetrics{}
			tr, err := New(Options{Signer: &signer.Signer{Key: "k", Secret: signer.StaticSecret("s")}, Metrics: m, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			tr.skew.Store(-600)                                  // learned earlier, before the clocks walked back
			date := now.Add(tt.upOff).Add(10 * time.Millisecond) // the answer's latency
			resp := &http.Response{Header: http.Header{"Date": {date.UTC().Format(http.TimeFormat)}}}
			if !tr.learnSkew(resp, &Call{}) {
				t.Fatal("Date not used")
			}
			if got := time.Duration(tr.skew.Load()) * time.Second; got != tt.want {
				t.Errorf("offset = %v, want %v", got, tt.want)
			}
			if len(m.offsets) != 1 || m.offsets[0] != tt.want {
				t.Errorf("metric offsets %v, want [%v]", m.offsets, tt.want)
			}
		})
	}
}
