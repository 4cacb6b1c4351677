package proxy_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"khproxy/proxy"
	"khproxy/signer"
)

// failFirst answers the first n requests with status (and extra headers),
// then 200.
func failFirst(n int32, status int, header map[string]string, body string) (http.HandlerFunc, *atomic.Int32) {
	var count atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1) <= n {
			for k, v := range header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
			return
		}
		io.WriteString(w, "ok")
	}, &count
}

func withRetries(n int) func(*proxy.Options) {
	return func(o *proxy.Options) { o.RetryMax = n; o.RetryBudget = 10 * time.Second }
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		method, path string
		header       map[string]string // client headers
		status       int
		respHeader   map[string]string
		respBody     string
		wantAttempts int
		wantStatus   int
	}{
		{"GET 503 then ok", "GET", "/v1/products", nil, 503, nil, "", 2, 200},
		{"GET 502 then ok", "GET", "/v1/products", nil, 502, nil, "", 2, 200},
		{"PUT 504 then ok", "PUT", "/v1/webhooks", nil, 504, nil, "", 2, 200},
		{"order 503 then ok", "POST", "/v1/orders", nil, 503, nil, "", 2, 200},
		{"client key POST 503 then ok", "POST", "/v1/other", map[string]string{"Idempotency-Key": "k1"}, 503, nil, "", 2, 200},
		{"keyless POST 503 passes through", "POST", "/v1/other", nil, 503, nil, "", 1, 503},
		{"keyless PATCH 503 passes through", "PATCH", "/v1/other", nil, 503, nil, "", 1, 503},
		{"429 with Retry-After", "GET", "/v1/products", nil, 429, map[string]string{"Retry-After": "1"}, "", 2, 200},
		{"429 without Retry-After passes through", "GET", "/v1/products", nil, 429, nil, "", 1, 429},
		{"429 beyond budget passes through", "GET", "/v1/products", nil, 429, map[string]string{"Retry-After": "3600"}, "", 1, 429},
		{"replay_detected, even keyless POST", "POST", "/v1/other", nil, 401, map[string]string{"Content-Type": "application/problem+json"},
			`{"type":"auth_failed","status":401,"reason":"replay_detected"}`, 2, 200},
		{"other 401 passes through", "GET", "/v1/products", nil, 401, nil, `{"reason":"signature_mismatch"}`, 1, 401},
		{"4xx passes through", "POST", "/v1/orders", nil, 422, nil, `{"type":"validation_failed"}`, 1, 422},
		{"client key 409 passes through", "POST", "/v1/orders", map[string]string{"Idempotency-Key": "k1"}, 409, nil, `{"type":"idempotency_conflict"}`, 1, 409},
		// khproxy's own key has one body: a 409 can only mean "in progress".
		{"automatic key: any 409 is in progress", "POST", "/v1/orders", nil, 409, nil, `{"type":"idempotency_conflict"}`, 2, 200},
		// A keyed request is resent on every answer that leaves it in doubt.
		{"order 500 then ok", "POST", "/v1/orders", nil, 500, nil, "", 2, 200},
		{"order 429 without Retry-After", "POST", "/v1/orders", nil, 429, nil, "", 2, 200},
		{"order 408", "POST", "/v1/orders", nil, 408, nil, "", 2, 200},
		{"order 425", "POST", "/v1/orders", nil, 425, nil, "", 2, 200},
		{"order 409 in progress", "POST", "/v1/orders", nil, 409, nil, `{"type":"idempotency_conflict","reason":"request_in_progress"}`, 2, 200},
		{"client key 500 then ok", "POST", "/v1/other", map[string]string{"Idempotency-Key": "k1"}, 500, nil, "", 2, 200},
		{"GET 500 passes through", "GET", "/v1/products", nil, 500, nil, "", 1, 500},
		{"keyless POST 500 passes through", "POST", "/v1/other", nil, 500, nil, "", 1, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handle, _ := failFirst(1, tt.status, tt.respHeader, tt.respBody)
			h := newHarness(t, handle, withRetries(3))
			hdr := http.Header{}
			for k, v := range tt.header {
				hdr.Set(k, v)
			}
			resp, body := h.do(t, tt.method, tt.path, strings.NewReader(`{"a":1}`), hdr)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if resp.StatusCode != 200 && string(body) != tt.respBody {
				t.Errorf("passed-through body = %q, want %q", body, tt.respBody)
			}
			all := h.up.all()
			if len(all) != tt.wantAttempts {
				t.Fatalf("%d attempts reached the upstream, want %d", len(all), tt.wantAttempts)
			}
			if len(all) == 2 {
				a, b := all[0], all[1]
				if a.Header.Get("KH-Nonce") == b.Header.Get("KH-Nonce") {
					t.Error("retry reused the nonce")
				}
				if a.Header.Get("Idempotency-Key") != b.Header.Get("Idempotency-Key") || string(a.Body) != string(b.Body) {
					t.Error("retry changed the Idempotency-Key or the body")
				}
				if b.SigErr != nil {
					t.Errorf("retry signature: %v", b.SigErr)
				}
			}
		})
	}
}

func TestRetryMaxAndZero(t *testing.T) {
	for _, n := range []int{0, 2} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			handle, _ := failFirst(100, 503, nil, "down")
			h := newHarness(t, handle, withRetries(n))
			resp, _ := h.do(t, "GET", "/v1/products", nil, nil)
			if resp.StatusCode != 503 {
				t.Errorf("status = %d, want the API's last 503", resp.StatusCode)
			}
			if got := len(h.up.all()); got != n+1 {
				t.Errorf("%d attempts, want %d", got, n+1)
			}
		})
	}
}

func TestClockSkewIsLearned(t *testing.T) {
	for _, offset := range []time.Duration{10 * time.Minute, -10 * time.Minute} {
		t.Run(offset.String(), func(t *testing.T) {
			// The upstream's clock is off by offset and it enforces ±300 s.
			handle := func(w http.ResponseWriter, r *http.Request) {
				server := time.Now().Add(offset)
				w.Header().Set("Date", server.UTC().Format(http.TimeFormat))
				ts, _ := strconv.ParseInt(r.Header.Get("KH-Timestamp"), 10, 64)
				if d := server.Unix() - ts; d > 300 || d < -300 {
					w.Header().Set("Content-Type", "application/problem+json")
					w.WriteHeader(401)
					io.WriteString(w, `{"type":"auth_failed","reason":"timestamp_out_of_window"}`)
					return
				}
				io.WriteString(w, "ok")
			}
			h := newHarness(t, handle, withRetries(0))
			for i := range 2 {
				resp, body := h.do(t, "GET", "/v1/me", nil, nil)
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: status %d %s", i, resp.StatusCode, body)
				}
			}
			if got := len(h.up.all()); got != 3 {
				t.Errorf("%d attempts for two requests, want 3 (one correction, then right first time)", got)
			}
			if !strings.Contains(h.logs.String(), "upstream clock differs") {
				t.Error("no warning about the clock offset")
			}
		})
	}
	t.Run("no Date header", func(t *testing.T) {
		handle, _ := failFirst(100, 401, map[string]string{"Date": ""}, `{"reason":"timestamp_out_of_window"}`)
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Date"] = nil // suppress the server's own Date
			handle(w, r)
		}, withRetries(3))
		resp, _ := h.do(t, "GET", "/v1/me", nil, nil)
		if resp.StatusCode != 401 || len(h.up.all()) != 1 {
			t.Errorf("status %d after %d attempts, want the 401 after one", resp.StatusCode, len(h.up.all()))
		}
	})
}

// dropConn hijacks and closes the connection without an answer.
func dropConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestTransportErrors(t *testing.T) {
	t.Run("keyless POST is not resent after bytes reached upstream", func(t *testing.T) {
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { dropConn(w) }, withRetries(3))
		resp, body := h.do(t, "POST", "/v1/other", strings.NewReader("{}"), nil)
		assertProblem(t, resp, body, http.StatusBadGateway, "upstream_unreachable")
		if got := len(h.up.all()); got != 1 {
			t.Errorf("%d attempts, want 1", got)
		}
	})
	t.Run("order is resent with its key", func(t *testing.T) {
		var n atomic.Int32
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				dropConn(w)
				return
			}
			io.WriteString(w, "ok")
		}, withRetries(3))
		resp, _ := h.do(t, "POST", "/v1/orders", strings.NewReader("{}"), nil)
		if resp.StatusCode != 200 {
			t.Errorf("status = %d", resp.StatusCode)
		}
	})
	t.Run("connection never made is retried for any method", func(t *testing.T) {
		var calls atomic.Int32
		h := newHarness(t, nil, withRetries(3), func(o *proxy.Options) {
			o.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if calls.Add(1) == 1 {
					return nil, errors.New("dial tcp: connection refused")
				}
				return http.DefaultTransport.RoundTrip(r)
			})
		})
		resp, _ := h.do(t, "POST", "/v1/other", strings.NewReader("{}"), nil)
		if resp.StatusCode != 200 || calls.Load() != 2 {
			t.Errorf("status %d after %d calls, want 200 after 2", resp.StatusCode, calls.Load())
		}
	})
	t.Run("exhausted: problem names attempts and key", func(t *testing.T) {
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { dropConn(w) }, withRetries(2))
		hdr := http.Header{"Idempotency-Key": {"client-key-7"}}
		resp, body := h.do(t, "POST", "/v1/orders", strings.NewReader("{}"), hdr)
		p := assertProblem(t, resp, body, http.StatusBadGateway, "upstream_unreachable")
		key := resp.Header.Get("Idempotency-Key")
		detail := fmt.Sprint(p["detail"])
		if key != "client-key-7" || !strings.Contains(detail, key) || !strings.Contains(detail, "attempts: 3") {
			t.Errorf("detail %q should give 3 attempts and key %q", detail, key)
		}
	})
	t.Run("exhausted with an automatic key: in doubt, names attempts and key", func(t *testing.T) {
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { dropConn(w) }, withRetries(2))
		resp, body := h.do(t, "POST", "/v1/orders", strings.NewReader("{}"), nil)
		p := assertProblem(t, resp, body, http.StatusServiceUnavailable, "in_doubt")
		key := resp.Header.Get("Idempotency-Key")
		detail := fmt.Sprint(p["detail"])
		if key == "" || !strings.Contains(detail, key) || !strings.Contains(detail, "attempts: 3") {
			t.Errorf("detail %q should give 3 attempts and key %q", detail, key)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Error("no Retry-After on in_doubt")
		}
	})
	t.Run("timeouts are retried, then 504", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}, withRetries(1), func(o *proxy.Options) { o.UpstreamTimeout = 100 * time.Millisecond })
		resp, body := h.do(t, "GET", "/v1/products", nil, nil)
		assertProblem(t, resp, body, http.StatusGatewayTimeout, "upstream_timeout")
		if got := len(h.up.all()); got != 2 {
			t.Errorf("%d attempts, want 2", got)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestClientCancellationStopsRetries(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(503)
	}, withRetries(3))
	req, _ := http.NewRequest("GET", h.proxy.URL+"/v1/products", nil)
	client := &http.Client{Timeout: 300 * time.Millisecond}
	if _, err := client.Do(req); err == nil {
		t.Fatal("want the client's timeout")
	}
	// The proxy stops waiting (Retry-After asked for 5s) and logs the
	// request as abandoned.
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(h.logs.String(), `"status":499`) {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy still waits to retry after the client left:\n%s", h.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := len(h.up.all()); got != 1 {
		t.Errorf("%d attempts after the client left, want 1", got)
	}
}

func TestSigningFailureIsNotRetried(t *testing.T) {
	h := newHarness(t, nil, withRetries(3), func(o *proxy.Options) {
		o.Signer = &signer.Signer{Key: testKey, Secret: signer.StaticSecret("")}
	})
	resp, body := h.do(t, "GET", "/v1/products", nil, nil)
	assertProblem(t, resp, body, http.StatusInternalServerError, "signing_failed")
	if strings.Contains(h.logs.String(), "retrying upstream request") {
		t.Error("a signing failure was retried")
	}
}

func TestReplayDetectedRetriedEvenWithoutRetries(t *testing.T) {
	handle, _ := failFirst(1, 401, nil, `{"type":"auth_failed","reason":"replay_detected"}`)
	h := newHarness(t, handle, withRetries(0))
	resp, _ := h.do(t, "GET", "/v1/products", nil, nil)
	if resp.StatusCode != 200 || len(h.up.all()) != 2 {
		t.Errorf("status %d after %d attempts, want 200 after 2", resp.StatusCode, len(h.up.all()))
	}
}

func TestAbandonedLeaderIsBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "abc")
		w.(http.Flusher).Flush()
		<-release // the rest of the body never comes
	}, func(o *proxy.Options) {
		o.RetryBudget = 300 * time.Millisecond
		o.UpstreamTimeout = 200 * time.Millisecond
	})
	c := &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := c.Post(h.proxy.URL+"/v1/orders", "application/json", strings.NewReader("{}")); err == nil {
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	// Once its caller left, the leader may go on for budget + timeout
	// (500ms), then gives up and logs the request.
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(h.logs.String(), `"msg":"request"`) {
		if time.Now().After(deadline) {
			t.Fatal("the leader is still in flight long after its caller left")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sequence answers the n-th request (0-based) with statuses[n], the last
// one from then on; a 409 says request_in_progress.
func sequence(statuses ...int) http.HandlerFunc {
	var n atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		code := statuses[min(i, len(statuses)-1)]
		if code == http.StatusConflict {
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(code)
			io.WriteString(w, `{"type":"idempotency_conflict","reason":"request_in_progress"}`)
			return
		}
		w.WriteHeader(code)
	}
}

// TestInProgressIsNotCountedAgainstRetryMax: waiting out a request in
// progress is bounded by the budget only; the failures around it still
// count.
func TestInProgressIsNotCountedAgainstRetryMax(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		retryMax int
		statuses []int
		want     int
	}{
		{"RetryMax 0", 0, []int{409, 409, 409, 201}, 201},
		{"RetryMax 1: one 503 among the polls", 1, []int{409, 409, 409, 409, 503, 201}, 201},
		{"RetryMax 1: two 503s", 1, []int{503, 409, 503, 201}, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, sequence(tt.statuses...), func(o *proxy.Options) { o.RetryMax = tt.retryMax; o.RetryBudget = 10 * time.Second })
			resp, _ := h.do(t, "POST", "/v1/other", strings.NewReader("{}"), http.Header{"Idempotency-Key": {"client-k"}})
			if resp.StatusCode != tt.want {
				t.Errorf("status %d after %d attempts, want %d", resp.StatusCode, len(h.up.all()), tt.want)
			}
		})
	}
}
