package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/proxy"
)

const inDoubtBody = `{"product":"vps-s","cycle":"monthly"}`

// inDoubtOpts sets the upstream timeout and the retry budget.
func inDoubtOpts(timeout, budget time.Duration) func(*proxy.Options) {
	return func(o *proxy.Options) {
		o.UpstreamTimeout, o.RetryBudget, o.RetryMax = timeout, budget, 3
	}
}

// TestInProgressAfterTimeoutIsRetried: the retry after an upstream timeout
// meets the order still being placed; khproxy waits it out with the same key
// and answers with the order, never with the 409.
func TestInProgressAfterTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	idemModes(t, func(t *testing.T, m bool) {
		api := newIdemAPI(700*time.Millisecond, m)
		h := newHarness(t, api.serve, inDoubtOpts(200*time.Millisecond, 5*time.Second))
		code, hdr, body, err := post(h.proxy.Client(), h.proxy.URL, inDoubtBody)
		if err != nil || code != http.StatusCreated || body != `{"id":1}` {
			t.Fatalf("got %d %s %v, want 201 with order 1", code, body, err)
		}
		if n := api.count(); n != 1 {
			t.Errorf("%d orders, want 1", n)
		}
		if hdr.Get("Idempotency-Key") == "" || api.distinctKeys() != 1 {
			t.Errorf("key %q, %d keys upstream; want one key, returned", hdr.Get("Idempotency-Key"), api.distinctKeys())
		}
	})
}

// TestInDoubtKeepsTheKey: when the budget ends before a final answer, the
// caller gets in_doubt with the key, and its identical retry reuses the key
// and gets the one order.
func TestInDoubtKeepsTheKey(t *testing.T) {
	t.Parallel()
	idemModes(t, func(t *testing.T, m bool) {
		api := newIdemAPI(1200*time.Millisecond, m)
		h := newHarness(t, api.serve, inDoubtOpts(200*time.Millisecond, 500*time.Millisecond))
		resp, body := h.do(t, "POST", "/v1/orders", strings.NewReader(inDoubtBody), nil)
		assertProblem(t, resp, body, http.StatusServiceUnavailable, "in_doubt")
		key := resp.Header.Get("Idempotency-Key")
		if key == "" || !strings.Contains(string(body), key) {
			t.Errorf("in_doubt without the key %q: %s", key, body)
		}
		time.Sleep(900 * time.Millisecond) // the first order is placed meanwhile
		code, hdr, got, err := post(h.proxy.Client(), h.proxy.URL, inDoubtBody)
		if err != nil || code != http.StatusCreated || got != `{"id":1}` {
			t.Fatalf("retry: %d %s %v, want 201 with order 1", code, got, err)
		}
		if hdr.Get("Idempotency-Key") != key {
			t.Errorf("retry used key %q, want %q", hdr.Get("Idempotency-Key"), key)
		}
		if n := api.count(); n != 1 {
			t.Errorf("%d orders, want 1", n)
		}
	})
}

// TestClaimerNeverGetsInDoubt: a retry that claimed an abandoned request
// whose budget ran out does not get that in-doubt answer as its result: it
// asks the API with the key itself and gets the order.
func TestClaimerNeverGetsInDoubt(t *testing.T) {
	t.Parallel()
	idemModes(t, func(t *testing.T, m bool) {
		api := newIdemAPI(time.Second, m)
		h := newHarness(t, api.serve, inDoubtOpts(300*time.Millisecond, 800*time.Millisecond))
		impatient := &http.Client{Timeout: 150 * time.Millisecond}
		if _, _, _, err := post(impatient, h.proxy.URL, inDoubtBody); err == nil {
			t.Fatal("the impatient caller got an answer")
		}
		time.Sleep(100 * time.Millisecond)
		code, _, body, err := post(h.proxy.Client(), h.proxy.URL, inDoubtBody)
		if err != nil || code != http.StatusCreated || body != `{"id":1}` {
			t.Fatalf("retry: %d %s %v, want 201 with order 1", code, body, err)
		}
		if n := api.count(); n != 1 {
			t.Errorf("%d orders, want 1", n)
		}
		testutil.WaitFor(t, "the retry's access-log line, with the first request's key", func() bool {
			return strings.Contains(h.logs.String(), `"idempotency_key_source":"reused"`)
		})
	})
}

// TestClientKeyInProgressIsRetried: a client's key follows the same retry
// rule: a 409 request_in_progress is waited out.
func TestClientKeyInProgressIsRetried(t *testing.T) {
	api := newIdemAPI(600*time.Millisecond, true)
	h := newHarness(t, api.serve, inDoubtOpts(200*time.Millisecond, 5*time.Second))
	hdr := http.Header{"Idempotency-Key": {"client-order-1"}}
	resp, body := h.do(t, "POST", "/v1/other", strings.NewReader(inDoubtBody), hdr)
	if resp.StatusCode != http.StatusCreated || string(body) != `{"id":1}` {
		t.Fatalf("got %d %s, want 201 with order 1", resp.StatusCode, body)
	}
	if n := api.count(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
}
