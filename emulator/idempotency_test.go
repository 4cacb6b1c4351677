package emulator

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

func TestIdempotencyReplay(t *testing.T) {
	env := newEnv(t, nil)
	r := rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "order-abc.1_x"}
	resp1, body1 := env.do(t, r)
	resp2, body2 := env.do(t, r) // re-signed: fresh nonce and timestamp
	for i, resp := range []*http.Response{resp1, resp2} {
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("attempt %d: status %d", i+1, resp.StatusCode)
		}
	}
	if !bytes.Equal(body1, body2) {
		t.Errorf("replayed body differs:\n%s\n%s", body1, body2)
	}
	if got, want := resp2.Header.Get(HeaderReplayed), "true"; got != want {
		t.Errorf("%s: got %q, want %q", HeaderReplayed, got, want)
	}
	if resp1.Header.Get(HeaderReplayed) != "" {
		t.Error("first answer marked as replay")
	}
	if resp1.Header.Get("X-Request-Id") == resp2.Header.Get("X-Request-Id") {
		t.Error("replay reused the X-Request-Id header")
	}
	if got, want := resp2.Header.Get("Location"), resp1.Header.Get("Location"); got != want || got == "" {
		t.Errorf("Location: got %q, want %q", got, want)
	}
	if got, want := env.emu.OrderCount(), 1; got != want {
		t.Errorf("orders: got %d, want %d", got, want)
	}
	if bal, _ := env.emu.Balance(""); bal != DefaultInitialBalance-999 {
		t.Errorf("balance: got %d, want %d (charged once)", bal, DefaultInitialBalance-999)
	}
}

func TestIdempotencyConflict(t *testing.T) {
	env := newEnv(t, nil)
	env.order(t, "same-key")
	resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", body: `{"product_id":42,"billing_cycle":"annually"}`, idem: "same-key"})
	wantProblem(t, resp, body, http.StatusConflict, codeIdemConflict, "body_mismatch")
	// Same key on another endpoint conflicts as well.
	sid := jsonID(decode(t, mustGet(t, env, "/v1/orders/1001"))["service_id"])
	resp, body = env.do(t, rq{method: "POST", path: "/v1/services/" + sid + "/actions", body: testutil.OrderBody, idem: "same-key"})
	wantProblem(t, resp, body, http.StatusConflict, codeIdemConflict, "body_mismatch")
	if got, want := env.emu.OrderCount(), 1; got != want {
		t.Errorf("orders: got %d, want %d", got, want)
	}
}

func mustGet(t *testing.T, env *testEnv, path string) []byte {
	t.Helper()
	resp, body := env.do(t, rq{path: path})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", path, resp.StatusCode, body)
	}
	return body
}

func TestIdempotencyKeyValidation(t *testing.T) {
	env := newEnv(t, nil)
	ord := env.order(t, "setup")
	actions := "/v1/services/" + jsonID(ord["service_id"]) + "/actions"
	tests := []struct {
		name, path, body string
		mutate           func(http.Header)
	}{
		{"orders missing", "/v1/orders", testutil.OrderBody, nil},
		{"orders empty", "/v1/orders", testutil.OrderBody, func(h http.Header) { h.Set(HeaderIdempotencyKey, "") }},
		{"orders space", "/v1/orders", testutil.OrderBody, func(h http.Header) { h.Set(HeaderIdempotencyKey, "a b") }},
		{"orders 81 chars", "/v1/orders", testutil.OrderBody, func(h http.Header) { h.Set(HeaderIdempotencyKey, strings.Repeat("a", 81)) }},
		{"orders slash", "/v1/orders", testutil.OrderBody, func(h http.Header) { h.Set(HeaderIdempotencyKey, "a/b") }},
		{"actions missing", actions, `{"action":"reboot"}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := env.do(t, rq{method: "POST", path: tc.path, body: tc.body, mutate: tc.mutate})
			p := wantProblem(t, resp, body, http.StatusBadRequest, codeValidation, "")
			if got, want := fieldOf(t, p), HeaderIdempotencyKey; got != want {
				t.Errorf("field: got %q, want %q", got, want)
			}
		})
	}
	// 80 characters is fine.
	env.order(t, strings.Repeat("k", 80))
	if got, want := env.emu.OrderCount(), 2; got != want {
		t.Errorf("orders: got %d, want %d", got, want)
	}
}

func TestIdempotencyInFlight(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Faults = Faults{Delay: time.Second, DelayCount: 1} })
	r := rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "in-flight"}
	wait := env.background(t, r)
	// The order commits before the delay; the idempotency record stays
	// "in progress" until the delayed answer is finished.
	testutil.WaitFor(t, "first order to commit", func() bool { return env.emu.OrderCount() == 1 })
	resp, body := env.do(t, r)
	p := wantProblem(t, resp, body, http.StatusConflict, codeIdemConflict, "request_in_progress")
	if !strings.Contains(p["detail"].(string), "in progress") {
		t.Errorf("detail %q does not say in progress", p["detail"])
	}
	if got, want := resp.Header.Get("Retry-After"), "1"; got != want {
		t.Errorf("Retry-After: got %q, want %q", got, want)
	}
	first, firstBody := wait()
	if first == nil || first.StatusCode != http.StatusCreated {
		t.Fatalf("first answer: %v", first)
	}
	resp, body = env.do(t, r)
	if resp.StatusCode != http.StatusCreated || !bytes.Equal(body, firstBody) {
		t.Errorf("after completion: status %d, body %s; want replay of %s", resp.StatusCode, body, firstBody)
	}
	if got, want := env.emu.OrderCount(), 1; got != want {
		t.Errorf("orders: got %d, want %d", got, want)
	}
}

func TestIdempotencyServerErrorNotStored(t *testing.T) {
	env := newEnv(t, nil)
	env.emu.mu.Lock()
	env.emu.maxOrders = 0
	env.emu.mu.Unlock()
	r := rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "cap"}
	resp, body := env.do(t, r)
	wantProblem(t, resp, body, http.StatusServiceUnavailable, codeCapacity, "order_limit")
	env.emu.mu.Lock()
	env.emu.maxOrders = 10
	env.emu.mu.Unlock()
	resp, body = env.do(t, r)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(HeaderReplayed) != "" {
		t.Fatalf("retry after 5xx: status %d replayed=%q body %s; want a fresh 201", resp.StatusCode, resp.Header.Get(HeaderReplayed), body)
	}
}

func TestIdempotencyBusinessErrorStored(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.InitialBalance = -1 })
	r := rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "poor"}
	resp1, body1 := env.do(t, r)
	wantProblem(t, resp1, body1, http.StatusPaymentRequired, codePayment, "insufficient_credit_and_no_card")
	env.emu.mu.Lock()
	env.emu.accounts[DefaultAccount].balance = 100000
	env.emu.mu.Unlock()
	resp2, body2 := env.do(t, r)
	// The stored 402, under this answer's one request id: the body's
	// request_id is the X-Request-Id header (wantProblem checks), and
	// nothing else changed.
	wantProblem(t, resp2, body2, http.StatusPaymentRequired, codePayment, "insufficient_credit_and_no_card")
	id1, id2 := resp1.Header.Get("X-Request-Id"), resp2.Header.Get("X-Request-Id")
	if id1 == id2 || !bytes.Equal(bytes.Replace(body1, []byte(id1), []byte(id2), 1), body2) {
		t.Errorf("replay: body %s; want the stored 402\n%s\nwith request id %s", body2, body1, id2)
	}
	if got := env.emu.OrderCount(); got != 0 {
		t.Errorf("orders: got %d, want 0", got)
	}
}

func TestIdempotencyStoreExpiry(t *testing.T) {
	env := newEnv(t, nil)
	env.order(t, "expiring")
	env.clock.Advance(idempotencyTTL)
	env.order(t, "expiring") // 24 h later the key is fresh again
	if got, want := env.emu.OrderCount(), 2; got != want {
		t.Errorf("orders: got %d, want %d", got, want)
	}
}

// A handler that panics must not leave its Idempotency-Key in progress:
// the retry with the key runs instead of getting request_in_progress.
func TestIdempotencyPanickingHandlerReleasesKey(t *testing.T) {
	env := newEnv(t, nil)
	i := slices.IndexFunc(routes, func(rt route) bool { return rt.method == "POST" && rt.pattern == "/v1/orders" })
	orig := routes[i].handler
	t.Cleanup(func() { routes[i].handler = orig })
	routes[i].handler = func(*Emulator, *call) *response { panic("a handler bug") }
	r := rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "panics"}
	// net/http recovers the panic and closes the connection.
	if resp, body, err := env.try(t, r); err == nil {
		t.Fatalf("the panicking request was answered: %d %s", resp.StatusCode, body)
	}
	routes[i].handler = orig
	resp, body := env.do(t, r)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("retry: status %d, want 201: %s", resp.StatusCode, body)
	}
}
