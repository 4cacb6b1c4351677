package emulator

import (
	"net/http"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

func TestFaultDropAfterCommit(t *testing.T) {
	env := newEnv(t, nil)
	if err := env.emu.SetFaults(Faults{DropAfterCommit: 1}); err != nil {
		t.Fatal(err)
	}
	r := rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "dropped"}
	if resp, _, err := env.try(t, r); err == nil {
		t.Fatalf("want a transport error, got status %d", resp.StatusCode)
	}
	if got, want := env.emu.OrderCount(), 1; got != want {
		t.Fatalf("orders after drop: got %d, want %d", got, want)
	}
	if got := env.emu.Faults().DropAfterCommit; got != 0 {
		t.Errorf("remaining drops: got %d, want 0", got)
	}
	resp, body := env.do(t, r) // retry, same key, re-signed
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(HeaderReplayed) != "true" {
		t.Fatalf("retry: status %d replayed %q body %s", resp.StatusCode, resp.Header.Get(HeaderReplayed), body)
	}
	if got, want := env.emu.OrderCount(), 1; got != want {
		t.Errorf("orders after retry: got %d, want %d", got, want)
	}
	// Reads are not committed writes and are never dropped.
	env.emu.SetFaults(Faults{DropAfterCommit: 1})
	mustGet(t, env, "/v1/billing/balance")
	if got := env.emu.Faults().DropAfterCommit; got != 1 {
		t.Errorf("a read consumed the drop: remaining %d", got)
	}
}

func TestFaultFail(t *testing.T) {
	env := newEnv(t, nil)
	env.emu.SetFaults(Faults{FailCount: 2, FailStatus: http.StatusServiceUnavailable})
	for i := 0; i < 2; i++ {
		resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "f"})
		wantProblem(t, resp, body, http.StatusServiceUnavailable, codeInjected, "")
		if resp.Header.Get("Retry-After") != "" {
			t.Error("unexpected Retry-After on 503 without RetryAfter")
		}
	}
	if got := env.emu.OrderCount(); got != 0 {
		t.Fatalf("orders: got %d, want 0", got)
	}
	env.order(t, "f") // key was never claimed
	env.emu.SetFaults(Faults{FailCount: 1, FailStatus: http.StatusTooManyRequests, RetryAfter: 2500 * time.Millisecond})
	resp, body := env.do(t, rq{path: "/v1/health", unsigned: true})
	wantProblem(t, resp, body, http.StatusTooManyRequests, codeRateLimited, "injected_fault")
	if got, want := resp.Header.Get("Retry-After"), "3"; got != want {
		t.Errorf("Retry-After: got %q, want %q", got, want)
	}
	if resp, _ := env.do(t, rq{path: "/v1/health", unsigned: true}); resp.StatusCode != 200 {
		t.Errorf("after faults: status %d", resp.StatusCode)
	}
}

func TestFaultDelay(t *testing.T) {
	env := newEnv(t, nil)
	env.emu.SetFaults(Faults{Delay: 300 * time.Millisecond, DelayCount: 1})
	start := time.Now()
	mustGet(t, env, "/v1/me")
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("delayed request took %v", d)
	}
	start = time.Now()
	mustGet(t, env, "/v1/me")
	if d := time.Since(start); d >= 300*time.Millisecond {
		t.Errorf("undelayed request took %v", d)
	}
	if f := env.emu.Faults(); f.Delay != 0 || f.DelayCount != 0 {
		t.Errorf("faults after count ran out: %+v", f)
	}
}

func TestFaultDelayClientGivesUp(t *testing.T) {
	env := newEnv(t, nil)
	env.emu.SetFaults(Faults{Delay: 10 * time.Second}) // every request
	ctxClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 100 * time.Millisecond}
	r := rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "gave-up", client: ctxClient}
	if _, _, err := env.try(t, r); err == nil {
		t.Fatal("want a client timeout")
	}
	if got := env.emu.OrderCount(); got != 1 {
		t.Fatalf("orders: got %d, want 1 (the write committed)", got)
	}
	env.emu.SetFaults(Faults{})
	r.client = nil
	var resp *http.Response
	var body []byte
	testutil.WaitFor(t, "idempotency record", func() bool {
		resp, body = env.do(t, r)
		return resp.StatusCode != http.StatusConflict
	})
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(HeaderReplayed) != "true" {
		t.Errorf("retry: status %d body %s", resp.StatusCode, body)
	}
	if got := env.emu.OrderCount(); got != 1 {
		t.Errorf("orders: got %d, want 1", got)
	}
}

func TestSetFaultsValidation(t *testing.T) {
	env := newEnv(t, nil)
	for _, f := range []Faults{{FailStatus: 404}, {FailStatus: 200}, {FailCount: -1}, {Delay: -time.Second}} {
		if err := env.emu.SetFaults(f); err == nil {
			t.Errorf("SetFaults(%+v): want error", f)
		}
	}
	_, err := New(Options{Keys: []Key{{ID: padKey("A"), Secret: "s"}}, Faults: Faults{FailStatus: 302}})
	if err == nil {
		t.Error("New with bad faults: want error")
	}
}
