package proxy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/internal/testutil"
	"khproxy/proxy"
)

// emuHarness is the proxy in front of the API emulator, both on real sockets.
type emuHarness struct {
	emu   *emulator.Emulator
	proxy *httptest.Server
	logs  *testutil.SyncBuffer
}

func newEmuHarness(t testing.TB, mutate ...func(*proxy.Options)) *emuHarness {
	t.Helper()
	emu, key, secret := emulatortest.New(t)
	up := httptest.NewServer(emu)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL + emulator.DefaultBasePath)
	opts := emuProxyOptions(t, u, key, secret)
	for _, m := range mutate {
		m(&opts)
	}
	srv, logs := startProxy(t, opts, secret)
	return &emuHarness{emu: emu, proxy: srv, logs: logs}
}

// send makes one request through the proxy with client and returns status,
// headers and body; err is the client's error, if any.
func (h *emuHarness) send(client *http.Client, method, path, body string, header http.Header) (int, http.Header, []byte, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, h.proxy.URL+path, r)
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

func (h *emuHarness) must(t testing.TB, method, path, body string, header http.Header) (int, http.Header, []byte) {
	t.Helper()
	code, hdr, b, err := h.send(h.proxy.Client(), method, path, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return code, hdr, b
}

func TestEmulatorAcceptsWhatTheProxySigns(t *testing.T) {
	h := newEmuHarness(t)
	code, _, body := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
	if code != http.StatusCreated {
		t.Fatalf("order: %d %s", code, body)
	}
	tests := []struct {
		name, method, path, body string
		header                   http.Header
		want                     int
	}{
		{"health", "GET", "/v1/health", "", nil, 200},
		{"me", "GET", "/v1/me", "", nil, 200},
		{"product", "GET", "/v1/products/42", "", nil, 200},
		{"unsorted repeated query", "GET", "/v1/services?per_page=5&z=2&page=1&z=1", "", nil, 200},
		{"encoded query", "GET", "/v1/services?page=1&x=a%20b+c%2F%3D", "", nil, 200},
		{"order read back", "GET", "/v1/orders/1001", "", nil, 200},
		{"service action", "POST", "/v1/services/5001/actions", `{"action":"reboot"}`, nil, 200},
		{"webhook put", "PUT", "/v1/webhooks", `{"url":null}`, nil, 200},
		{"balance", "GET", "/v1/billing/balance", "", nil, 200},
		{"spoofed auth headers", "GET", "/v1/me", "", http.Header{"Kh-Key": {"kh_live_SPOOF"}, "Kh-Signature": {"00"}}, 200},
		{"hop-by-hop cannot strip", "GET", "/v1/me", "", http.Header{"Connection": {"KH-Key, KH-Signature"}}, 200},
		{"upstream 404 passes through", "GET", "/v1/orders/999999", "", nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, body := h.must(t, tt.method, tt.path, tt.body, tt.header)
			if code != tt.want {
				t.Errorf("status = %d, want %d: %s", code, tt.want, body)
			}
			if hdr.Get("X-Request-Id") == "" {
				t.Error("X-Request-Id did not come through")
			}
		})
	}
	t.Run("invoice PDF", func(t *testing.T) {
		code, hdr, body := h.must(t, "GET", "/v1/billing/invoices/9001/pdf", "", nil)
		if code != 200 || hdr.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(body, []byte("%PDF-")) || !bytes.Contains(body, []byte("%%EOF")) {
			t.Errorf("PDF: %d %s %q", code, hdr.Get("Content-Type"), body[:min(len(body), 10)])
		}
	})
}

func TestDropAfterCommitMakesOneOrder(t *testing.T) {
	for _, reused := range []bool{false, true} {
		name := map[bool]string{false: "new connection", true: "reused connection"}[reused]
		t.Run(name, func(t *testing.T) {
			h := newEmuHarness(t)
			if reused {
				if code, _, _ := h.must(t, "GET", "/v1/me", "", nil); code != 200 {
					t.Fatal("warm-up failed")
				}
			}
			h.emu.SetFaults(emulator.Faults{DropAfterCommit: 1})
			code, hdr, body := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
			if code != http.StatusCreated {
				t.Errorf("status = %d, want 201: %s", code, body)
			}
			if hdr.Get("Idempotent-Replayed") != "true" {
				t.Error("the answer was not the API's replay of the committed order")
			}
			if n := h.emu.OrderCount(); n != 1 {
				t.Errorf("%d orders, want 1", n)
			}
		})
	}
}

func TestUpstreamFaultsAreRetried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults emulator.Faults
	}{
		{"503 then success", emulator.Faults{FailCount: 1, FailStatus: 503}},
		{"two 502s then success", emulator.Faults{FailCount: 2, FailStatus: 502}},
		{"429 with Retry-After", emulator.Faults{FailCount: 1, FailStatus: 429, RetryAfter: time.Second}},
		{"clock 10 minutes ahead", emulator.Faults{ClockOffset: 10 * time.Minute}},
		{"clock 10 minutes behind", emulator.Faults{ClockOffset: -10 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newEmuHarness(t)
			if err := h.emu.SetFaults(tt.faults); err != nil {
				t.Fatal(err)
			}
			code, _, body := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
			if code != http.StatusCreated {
				t.Errorf("status = %d, want 201: %s", code, body)
			}
			if n := h.emu.OrderCount(); n != 1 {
				t.Errorf("%d orders, want 1", n)
			}
			// Later requests are right first time (the clock stays corrected).
			before := h.emu.Requests()["GET /v1/me"]
			if code, _, _ := h.must(t, "GET", "/v1/me", "", nil); code != 200 {
				t.Errorf("follow-up: %d", code)
			}
			if got := h.emu.Requests()["GET /v1/me"] - before; got != 1 {
				t.Errorf("follow-up took %d attempts, want 1", got)
			}
		})
	}
}

// resendOnce is a RoundTripper that, like http.Transport on a reused
// connection, sends the first request twice with identical headers.
type resendOnce struct {
	next http.RoundTripper
	done atomic.Bool
}

func (r *resendOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.done.CompareAndSwap(false, true) {
		body, _ := io.ReadAll(req.Body)
		first := req.Clone(req.Context())
		first.Body = io.NopCloser(bytes.NewReader(body))
		resp, err := r.next.RoundTrip(first)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	return r.next.RoundTrip(req)
}

func TestReplayDetectedIsResigned(t *testing.T) {
	rt := &resendOnce{next: http.DefaultTransport}
	h := newEmuHarness(t, func(o *proxy.Options) { o.Transport = rt })
	code, _, body := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
	if code != http.StatusCreated {
		t.Errorf("status = %d, want 201: %s", code, body)
	}
	if !strings.Contains(h.logs.String(), `"reason":"replay_detected"`) {
		t.Error("the identical resend did not meet replay_detected; the test proves nothing")
	}
	if n := h.emu.OrderCount(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
}

func TestCallerRetries(t *testing.T) {
	t.Parallel()
	t.Run("retry while the first is in flight", func(t *testing.T) {
		h := newEmuHarness(t)
		h.emu.SetFaults(emulator.Faults{Delay: time.Second, DelayCount: 1})
		if _, _, _, err := h.send(impatient, "POST", "/v1/orders", testutil.OrderBody, nil); err == nil {
			t.Fatal("the first attempt did not time out")
		}
		code, _, body := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
		if code != http.StatusCreated {
			t.Errorf("retry: %d %s", code, body)
		}
		if n := h.emu.OrderCount(); n != 1 {
			t.Errorf("%d orders, want 1", n)
		}
	})
	t.Run("retry after the first finished unanswered", func(t *testing.T) {
		h := newEmuHarness(t)
		abandonThenRetry(t, h.emu, h, h)
	})
	t.Run("a retry answered by the first forgets its key", func(t *testing.T) {
		h := newEmuHarness(t)
		h.emu.SetFaults(emulator.Faults{Delay: time.Second, DelayCount: 1})
		if _, _, _, err := h.send(impatient, "POST", "/v1/orders", testutil.OrderBody, nil); err == nil {
			t.Fatal("the first attempt did not time out")
		}
		if code, _, _ := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil); code != http.StatusCreated {
			t.Fatalf("retry: %d", code)
		}
		// The caller has its answer; the same order again is a new order.
		code, hdr, _ := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
		if code != http.StatusCreated || hdr.Get("Idempotent-Replayed") != "" {
			t.Errorf("second order: %d, replayed %q", code, hdr.Get("Idempotent-Replayed"))
		}
		if n := h.emu.OrderCount(); n != 2 {
			t.Errorf("%d orders, want 2", n)
		}
	})
	t.Run("two identical orders on purpose", func(t *testing.T) {
		h := newEmuHarness(t)
		var keys []string
		for range 2 {
			code, hdr, body := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
			if code != http.StatusCreated {
				t.Fatalf("%d %s", code, body)
			}
			keys = append(keys, hdr.Get("Idempotency-Key"))
		}
		if n := h.emu.OrderCount(); n != 2 {
			t.Errorf("%d orders, want 2", n)
		}
		if keys[0] == keys[1] {
			t.Error("both orders used one key")
		}
	})
	t.Run("parallel identical orders from waiting callers are separate purchases", func(t *testing.T) {
		// An app buying n identical servers at once (Promise.all): every
		// caller stays connected, so none of them is a retry.
		h := newEmuHarness(t)
		const n = 5
		h.emu.SetFaults(emulator.Faults{Delay: 300 * time.Millisecond, DelayCount: n})
		var wg sync.WaitGroup
		bodies := make([]string, n)
		codes := make([]int, n)
		keys := make([]string, n)
		for i := range n {
			wg.Go(func() {
				code, hdr, body, err := h.send(h.proxy.Client(), "POST", "/v1/orders", testutil.OrderBody, nil)
				if err != nil {
					t.Error(err)
					return
				}
				codes[i], bodies[i], keys[i] = code, string(body), hdr.Get("Idempotency-Key")
			})
		}
		wg.Wait()
		ids, distinctKeys := map[int64]bool{}, map[string]bool{}
		for i := range n {
			var order struct{ ID int64 }
			json.Unmarshal([]byte(bodies[i]), &order)
			if codes[i] != http.StatusCreated || order.ID == 0 {
				t.Errorf("request %d: %d %s; want 201 with an order", i, codes[i], bodies[i])
			}
			ids[order.ID], distinctKeys[keys[i]] = true, true
		}
		if got := h.emu.OrderCount(); got != n {
			t.Errorf("%d orders, want %d: one per waiting caller", got, n)
		}
		if len(ids) != n || len(distinctKeys) != n {
			t.Errorf("%d distinct order ids and %d distinct keys over %d callers, want %d of each", len(ids), len(distinctKeys), n, n)
		}
	})
	t.Run("client key disables reuse", func(t *testing.T) {
		h := newEmuHarness(t)
		code, hdr, _ := h.must(t, "POST", "/v1/orders", testutil.OrderBody, http.Header{"Idempotency-Key": {"mine-1"}})
		if code != http.StatusCreated || hdr.Get("Idempotency-Key") != "mine-1" {
			t.Errorf("%d key %q", code, hdr.Get("Idempotency-Key"))
		}
		code, _, _ = h.must(t, "POST", "/v1/orders", `{"product_id":42,"billing_cycle":"yearly"}`, http.Header{"Idempotency-Key": {"mine-1"}})
		if code != http.StatusConflict {
			t.Errorf("same key, other body: %d, want the API's 409", code)
		}
	})
}

func TestKeylessPostOutsideRoutesIsNotRetried(t *testing.T) {
	h := newEmuHarness(t, func(o *proxy.Options) { o.IdempotentRoutes = testutil.Patterns(t, "POST /v1/orders") })
	h.emu.SetFaults(emulator.Faults{FailCount: 1, FailStatus: 503})
	code, _, _ := h.must(t, "POST", "/v1/services/5001/actions", `{"action":"reboot"}`, nil)
	if code != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want the API's 503 passed through", code)
	}
	if got := h.emu.Requests()["POST /v1/services/{id}/actions"]; got != 1 {
		t.Errorf("%d attempts reached the API, want 1", got)
	}
}

// abandonThenRetry orders through first with a client that gives up before
// the answer, waits until that request has finished, and orders the same
// again through second: the API must replay the first order, not place a
// second one.
func abandonThenRetry(t *testing.T, emu *emulator.Emulator, first, second *emuHarness) {
	t.Helper()
	emu.SetFaults(emulator.Faults{Delay: 400 * time.Millisecond, DelayCount: 1})
	if _, _, _, err := first.send(impatient, "POST", "/v1/orders", testutil.OrderBody, nil); err == nil {
		t.Fatal("the first attempt did not time out")
	}
	// Its caller left first: the line says 499, and the API's 201.
	testutil.WaitFor(t, "the first request's access-log line", func() bool {
		return strings.Contains(first.logs.String(), `"status":499`) && strings.Contains(first.logs.String(), `"upstream_status":201`)
	})
	code, hdr, body := second.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
	if code != http.StatusCreated || hdr.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry: %d replayed=%q %s", code, hdr.Get("Idempotent-Replayed"), body)
	}
	if n := emu.OrderCount(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
}

// impatient is a client that gives up on an answer before the emulator's
// 400 ms delay fault ends.
var impatient = &http.Client{Timeout: 200 * time.Millisecond}
