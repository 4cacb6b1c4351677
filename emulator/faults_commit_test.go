package emulator

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

func TestFaultFailAfterCommit(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Faults = Faults{FailAfterCommit: 1} })
	// Reads are not committed writes and keep the count.
	mustGet(t, env, "/v1/billing/balance")
	r := rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "failed-after-commit"}
	resp, body := env.do(t, r)
	wantProblem(t, resp, body, http.StatusInternalServerError, codeInjected, "injected_fault_after_commit")
	if got, want := env.emu.OrderCount(), 1; got != want {
		t.Fatalf("orders after the 500: got %d, want %d (the order is committed)", got, want)
	}
	if got := env.emu.Faults().FailAfterCommit; got != 0 {
		t.Errorf("remaining FailAfterCommit: got %d, want 0", got)
	}
	resp, body = env.do(t, r) // the retry, same key, re-signed
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(HeaderReplayed) != "true" {
		t.Fatalf("retry: status %d, replayed %q, body %s; want the stored 201", resp.StatusCode, resp.Header.Get(HeaderReplayed), body)
	}
	if got, want := decode(t, body)["id"], float64(env.emu.Orders()[0].ID); got != want {
		t.Errorf("replayed order id: got %v, want %v", got, want)
	}
	if got, want := env.emu.OrderCount(), 1; got != want {
		t.Errorf("orders after the retry: got %d, want %d", got, want)
	}
	if got := env.emu.InjectedFaults()["fail_after_commit"]; got != 1 {
		t.Errorf("InjectedFaults fail_after_commit: got %d, want 1", got)
	}
}

// A client that gives up on a slow answer does not end the wait: the key
// stays in progress until the answer would have left, then replays.
func TestFaultSlowAfterCommit(t *testing.T) {
	const slow = 600 * time.Millisecond
	env := newEnv(t, func(o *Options) { o.Faults = Faults{SlowAfterCommit: slow, SlowAfterCommitCount: 1} })
	impatient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 100 * time.Millisecond}
	r := rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "slow", client: impatient}
	start := time.Now()
	if resp, _, err := env.try(t, r); err == nil {
		t.Fatalf("want a client timeout, got status %d", resp.StatusCode)
	}
	if got, want := env.emu.OrderCount(), 1; got != want {
		t.Fatalf("orders: got %d, want %d (committed before the wait)", got, want)
	}
	r.client = nil
	resp, body := env.do(t, r)
	if time.Since(start) < slow {
		wantProblem(t, resp, body, http.StatusConflict, codeIdemConflict, "request_in_progress")
	}
	var replay *http.Response
	testutil.WaitFor(t, "the slow answer to be stored", func() bool {
		replay, body = env.do(t, r)
		return replay.StatusCode != http.StatusConflict
	})
	if time.Since(start) < slow {
		t.Errorf("the key was released after %v, before the slow answer (%v)", time.Since(start), slow)
	}
	if replay.StatusCode != http.StatusCreated || replay.Header.Get(HeaderReplayed) != "true" {
		t.Errorf("retry: status %d body %s", replay.StatusCode, body)
	}
	if f := env.emu.Faults(); f.SlowAfterCommit != 0 || f.SlowAfterCommitCount != 0 {
		t.Errorf("faults after the count ran out: %+v", f)
	}
	// The next write is not slowed.
	start = time.Now()
	env.order(t, "fast")
	if d := time.Since(start); d >= slow {
		t.Errorf("a write after the count ran out took %v", d)
	}
}

// A second request with the key of one still being answered gets, by
// mode, the 409 at once or the first one's answer once it is ready.
func TestInProgressModes(t *testing.T) {
	for _, tt := range []struct {
		mode InProgress
		want int
	}{
		{"", http.StatusConflict},
		{InProgressConflict, http.StatusConflict},
		{InProgressReplay, http.StatusCreated},
	} {
		t.Run(string(tt.mode), func(t *testing.T) {
			env := newEnv(t, func(o *Options) {
				o.InProgress = tt.mode
				o.Faults = Faults{SlowAfterCommit: 500 * time.Millisecond, SlowAfterCommitCount: 1}
			})
			r := rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "twice"}
			wait := env.background(t, r)
			testutil.WaitFor(t, "the first order to commit", func() bool { return env.emu.OrderCount() == 1 })
			resp, body := env.do(t, r)
			first, firstBody := wait()
			if resp.StatusCode != tt.want {
				t.Fatalf("second: status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			switch tt.want {
			case http.StatusConflict:
				wantProblem(t, resp, body, http.StatusConflict, codeIdemConflict, "request_in_progress")
				if got, want := resp.Header.Get("Retry-After"), "1"; got != want {
					t.Errorf("Retry-After: got %q, want %q", got, want)
				}
			default:
				if first == nil || !bytes.Equal(body, firstBody) || resp.Header.Get(HeaderReplayed) != "true" {
					t.Errorf("second: %s (replayed %q), want the first answer %s", body, resp.Header.Get(HeaderReplayed), firstBody)
				}
			}
			if got, want := env.emu.OrderCount(), 1; got != want {
				t.Errorf("orders: got %d, want %d", got, want)
			}
		})
	}
}

// In replay mode a request that waits and is not for the same body still
// gets the body_mismatch conflict at once.
func TestInProgressReplayBodyMismatch(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.InProgress = InProgressReplay
		o.Faults = Faults{SlowAfterCommit: 1500 * time.Millisecond, SlowAfterCommitCount: 1}
	})
	defer env.background(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "k"})()
	testutil.WaitFor(t, "the first order to commit", func() bool { return env.emu.OrderCount() == 1 })
	start := time.Now()
	resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", body: `{"product_id":7,"billing_cycle":"monthly"}`, idem: "k"})
	wantProblem(t, resp, body, http.StatusConflict, codeIdemConflict, "body_mismatch")
	if d := time.Since(start); d > 700*time.Millisecond {
		t.Errorf("the mismatch waited %v for the running request", d)
	}
}

func TestParseInProgress(t *testing.T) {
	for in, want := range map[string]InProgress{"": InProgressConflict, "409": InProgressConflict, "replay": InProgressReplay} {
		if got, err := ParseInProgress(in); err != nil || got != want {
			t.Errorf("ParseInProgress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"wait", "REPLAY", "200"} {
		if _, err := ParseInProgress(bad); err == nil {
			t.Errorf("ParseInProgress(%q): want an error", bad)
		}
	}
	if _, err := New(Options{Keys: []Key{{ID: padKey("A"), Secret: "s"}}, InProgress: "later"}); err == nil {
		t.Error("New with a bad InProgress: want an error")
	}
}

// Each random fault at rate 1 fires on every eligible request, does what
// it says and is counted.
func TestRandomFaults(t *testing.T) {
	for _, tt := range []struct {
		name       string
		random     RandomFaults
		status     int // 0: no answer (dropped)
		reason     string
		orders     int
		injected   string
		readStatus int // what GET /v1/me gets
	}{
		{"unavailable", RandomFaults{Unavailable: 1}, 503, "", 0, "unavailable", 503},
		{"rate limited", RandomFaults{RateLimited: 1}, 429, "injected_fault", 0, "rate_limited", 429},
		{"drop after commit", RandomFaults{DropAfterCommit: 1}, 0, "", 1, "drop_after_commit", 200},
		{"fail after commit", RandomFaults{FailAfterCommit: 1}, 500, "injected_fault_after_commit", 1, "fail_after_commit", 200},
		{"slow after commit", RandomFaults{SlowAfterCommit: 1, SlowDelay: 300 * time.Millisecond}, 201, "", 1, "slow_after_commit", 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.random.Seed = 7
			env := newEnv(t, func(o *Options) { o.Faults = Faults{Random: tt.random} })
			start := time.Now()
			resp, body, err := env.try(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "r"})
			switch {
			case tt.status == 0 && err == nil:
				t.Fatalf("want a dropped connection, got status %d", resp.StatusCode)
			case tt.status != 0 && err != nil:
				t.Fatal(err)
			case tt.status != 0 && resp.StatusCode != tt.status:
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			case tt.status >= 500:
				// An injected 5xx is never typed as one of the API's.
				if p := decode(t, body); p["type"] != EmulatorErrorTypeBase+codeInjected || p["reason"] != nilIfEmpty(tt.reason) {
					t.Errorf("type %v, reason %v: want %s, %q", p["type"], p["reason"], EmulatorErrorTypeBase+codeInjected, tt.reason)
				}
			case tt.reason != "":
				if p := decode(t, body); p["reason"] != tt.reason {
					t.Errorf("reason: got %v, want %s", p["reason"], tt.reason)
				}
			}
			if tt.random.SlowDelay > 0 && time.Since(start) < tt.random.SlowDelay {
				t.Errorf("slow answer came after %v, want at least %v", time.Since(start), tt.random.SlowDelay)
			}
			if got := env.emu.OrderCount(); got != tt.orders {
				t.Errorf("orders: got %d, want %d", got, tt.orders)
			}
			if resp, body := env.do(t, rq{path: "/v1/me"}); resp.StatusCode != tt.readStatus {
				t.Errorf("GET /v1/me: status %d, want %d: %s", resp.StatusCode, tt.readStatus, body)
			}
			want := 1
			if tt.readStatus != 200 {
				want = 2 // the read was faulted too
			}
			if got := env.emu.InjectedFaults()[tt.injected]; got != want {
				t.Errorf("InjectedFaults[%s] = %d, want %d (all: %v)", tt.injected, got, want, env.emu.InjectedFaults())
			}
		})
	}
}

// Rates between 0 and 1 fire about that often, the same way for the same
// seed.
func TestRandomFaultRates(t *testing.T) {
	count := func() int {
		env := newEnv(t, func(o *Options) { o.Faults = Faults{Random: RandomFaults{Unavailable: 0.25, Seed: 42}} })
		n := 0
		for range 200 {
			if resp, _ := env.do(t, rq{path: "/v1/health", unsigned: true}); resp.StatusCode == 503 {
				n++
			}
		}
		return n
	}
	first := count()
	if first < 25 || first > 75 {
		t.Errorf("503s at rate 0.25: %d of 200", first)
	}
	if second := count(); second != first {
		t.Errorf("the same seed drew %d, then %d faults", first, second)
	}
}

func TestClockWalk(t *testing.T) {
	const step, every, bound = 200 * time.Second, 10 * time.Second, 400 * time.Second
	env := newEnv(t, func(o *Options) {
		o.Faults = Faults{Random: RandomFaults{ClockStep: step, ClockEvery: every, ClockMax: bound, Seed: 3}}
	})
	e := env.emu
	e.serverNow() // schedules the first step
	prev, beyond := time.Duration(0), false
	for i := range 40 {
		env.clock.Advance(every)
		got := e.serverNow().Sub(env.clock.Now())
		if d := got - prev; d != step && d != -step {
			t.Fatalf("step %d: offset %v after %v, want a step of ±%v", i, got, prev, step)
		}
		if got > bound || got < -bound {
			t.Fatalf("step %d: offset %v beyond ±%v", i, got, bound)
		}
		beyond = beyond || got > 300*time.Second || got < -300*time.Second
		prev = got
	}
	if !beyond {
		t.Error("40 steps never went past ±300 s")
	}
	if got := e.InjectedFaults()["clock_step"]; got != 40 {
		t.Errorf("clock steps counted: %d, want 40", got)
	}
	if got := e.Faults().ClockOffset; got != prev {
		t.Errorf("Faults().ClockOffset = %v, want the walked %v", got, prev)
	}
	// An idle emulator catches up on the steps it missed, boundedly.
	env.clock.Advance(100 * every)
	e.serverNow()
	if got := e.InjectedFaults()["clock_step"]; got != 140 {
		t.Errorf("clock steps after an idle spell: %d, want 140", got)
	}
}

func TestRandomFaultsValidation(t *testing.T) {
	for _, r := range []RandomFaults{
		{Unavailable: -0.1},
		{RateLimited: 1.5},
		{Unavailable: 0.6, RateLimited: 0.6},
		{DropAfterCommit: 0.5, FailAfterCommit: 0.4, SlowAfterCommit: 0.2, SlowDelay: time.Second},
		{SlowAfterCommit: 0.1},
		{SlowDelay: -time.Second},
		{ClockStep: time.Second},
		{ClockStep: time.Minute, ClockEvery: time.Second, ClockMax: time.Second},
		{ClockStep: -time.Minute, ClockEvery: time.Second, ClockMax: time.Hour},
	} {
		if err := (Faults{Random: r}).validate(); err == nil {
			t.Errorf("RandomFaults %+v: want an error", r)
		}
	}
	for _, f := range []Faults{{FailAfterCommit: -1}, {SlowAfterCommit: -time.Second}, {SlowAfterCommitCount: -1}} {
		if err := f.validate(); err == nil {
			t.Errorf("Faults %+v: want an error", f)
		}
	}
}

func TestOrderLabel(t *testing.T) {
	env := newEnv(t, nil)
	resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", idem: "l1",
		body: `{"product_id":42,"billing_cycle":"monthly","label":"purchase-17"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := decode(t, body)["label"]; got != "purchase-17" {
		t.Errorf("label in the answer: %v", got)
	}
	if got := decode(t, mustGet(t, env, "/v1/orders/1001"))["label"]; got != "purchase-17" {
		t.Errorf("label in GET /v1/orders/1001: %v", got)
	}
	if got, ok := env.order(t, "l2")["label"]; !ok || got != nil {
		t.Errorf("an order without a label: label %v (present %v), want null", got, ok)
	}
	for i, bad := range []string{`""`, `"` + strings.Repeat("x", 201) + `"`, `"a\nb"`, `7`} {
		resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", idem: "bad" + strconv.Itoa(i),
			body: `{"product_id":42,"billing_cycle":"monthly","label":` + bad + `}`})
		if p := wantProblem(t, resp, body, http.StatusBadRequest, codeValidation, ""); fieldOf(t, p) != "label" {
			t.Errorf("label %s: field %q", bad, fieldOf(t, p))
		}
	}
	if got := env.emu.Orders()[0].Label; got != "purchase-17" {
		t.Errorf("Orders()[0].Label = %q", got)
	}
}

// nilIfEmpty is what a decoded body holds for an absent field when s is "".
func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
