package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/internal/testutil"
)

// startEmulator serves a KernelHost API emulator on a real socket and
// returns it with the URL of its unsigned health endpoint.
func startEmulator(t testing.TB) (*emulator.Emulator, string) {
	t.Helper()
	emu, _, _ := emulatortest.New(t)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return emu, srv.URL + emu.BasePath() + "/v1/health"
}

// runPoller starts p.Run until the test ends.
func runPoller(t testing.TB, p *Poller) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// TestPollerFollowsTheAPI: the readiness probe follows the emulator's health
// endpoint as it fails and recovers, and the transitions are logged.
func TestPollerFollowsTheAPI(t *testing.T) {
	emu, health := startEmulator(t)
	logs := &testutil.SyncBuffer{}
	p := NewPoller("upstream API", HTTPCheck{URL: health}, PollOptions{
		Interval: 20 * time.Millisecond,
		Logger:   slog.New(slog.NewJSONHandler(logs, nil)),
	})
	a := New(nil, p)
	a.Started()
	base := serve(t, a)
	probe := func() (int, string) { return get(t, "GET", base+PathReadyz) }

	if code, body := probe(); code != 503 || body != "not ready: upstream API: not checked yet\n" {
		t.Errorf("before Run: /readyz = %d %q", code, body)
	}
	runPoller(t, p)
	testutil.WaitFor(t, "ready", func() bool { code, _ := probe(); return code == 200 })

	if err := emu.SetFaults(emulator.Faults{FailCount: 1 << 30, FailStatus: 503}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "unready", func() bool { code, _ := probe(); return code == 503 })
	_, body := probe()
	if want := "not ready: upstream API: GET " + health + ": 503 Service Unavailable\n"; body != want {
		t.Errorf("/readyz with the API failing = %q, want %q", body, want)
	}
	// Liveness is not the API's business.
	if code, _ := get(t, "GET", base+PathHealthz); code != 200 {
		t.Errorf("/healthz with the API failing = %d, want 200", code)
	}

	if err := emu.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "ready again", func() bool { code, _ := probe(); return code == 200 })
	testutil.WaitFor(t, "the recovery logged", func() bool { return strings.Contains(logs.String(), "health check passing again") })
	if !strings.Contains(logs.String(), `"msg":"health check failing","check":"upstream API"`) {
		t.Errorf("the failure was not logged:\n%s", logs)
	}
}

// TestPollerOneCallPerInterval: probing does not call the API; only the
// background loop does.
func TestPollerOneCallPerInterval(t *testing.T) {
	emu, health := startEmulator(t)
	p := NewPoller("upstream API", HTTPCheck{URL: health}, PollOptions{Interval: time.Hour})
	a := New(nil, p)
	a.Started()
	base := serve(t, a)
	runPoller(t, p)
	testutil.WaitFor(t, "ready", func() bool { code, _ := get(t, "GET", base+PathReadyz); return code == 200 })
	for range 50 {
		if code, _ := get(t, "GET", base+PathReadyz); code != 200 {
			t.Fatalf("/readyz = %d", code)
		}
	}
	if n := emu.Requests()["GET /v1/health"]; n != 1 {
		t.Errorf("the API's health endpoint was called %d times for 51 probes within one interval, want 1", n)
	}
}

// TestPollerStates covers the results a Poller can give without the API.
func TestPollerStates(t *testing.T) {
	t.Run("not checked yet", func(t *testing.T) {
		release := make(chan struct{})
		p := NewPoller("slow", CheckFunc(func(ctx context.Context) error {
			<-release
			return nil
		}), PollOptions{Interval: time.Hour, Timeout: time.Hour})
		runPoller(t, p)
		t.Cleanup(func() { close(release) })
		if err := p.Check(context.Background()); err == nil || err.Error() != "slow: not checked yet" {
			t.Errorf("Check = %v, want slow: not checked yet", err)
		}
	})
	t.Run("stale", func(t *testing.T) {
		clock := testutil.NewClock(time.Unix(1_750_000_000, 0))
		p := NewPoller("api", CheckFunc(func(context.Context) error { return nil }), PollOptions{Interval: time.Hour, Timeout: time.Minute, Now: clock.Now})
		runPoller(t, p)
		testutil.WaitFor(t, "the first result", func() bool { return p.Check(context.Background()) == nil })
		clock.Advance(time.Hour + 6*time.Minute + time.Minute)
		if err := p.Check(context.Background()); err != nil {
			t.Errorf("Check at the longest jittered interval+timeout = %v, want nil", err)
		}
		clock.Advance(time.Second)
		if err := p.Check(context.Background()); err == nil || err.Error() != "api: no result for 1h7m1s" {
			t.Errorf("Check after the longest jittered interval+timeout = %v, want api: no result for 1h7m1s", err)
		}
	})
	t.Run("error wraps", func(t *testing.T) {
		errDown := errors.New("down")
		p := NewPoller("api", CheckFunc(func(context.Context) error { return errDown }), PollOptions{Interval: time.Hour})
		runPoller(t, p)
		testutil.WaitFor(t, "the first result", func() bool { return errors.Is(p.Check(context.Background()), errDown) })
		if got := p.Check(context.Background()).Error(); got != "api: down" {
			t.Errorf("Check = %q, want api: down", got)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		p := NewPoller("api", CheckFunc(func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}), PollOptions{Interval: time.Hour, Timeout: 10 * time.Millisecond})
		runPoller(t, p)
		testutil.WaitFor(t, "the timeout", func() bool { return errors.Is(p.Check(context.Background()), context.DeadlineExceeded) })
	})
}

func TestHTTPCheck(t *testing.T) {
	emu, health := startEmulator(t)
	if err := (HTTPCheck{URL: health}).Check(context.Background()); err != nil {
		t.Errorf("healthy API: %v", err)
	}
	if err := emu.SetFaults(emulator.Faults{FailCount: 1, FailStatus: 500}); err != nil {
		t.Fatal(err)
	}
	if err := (HTTPCheck{URL: health}).Check(context.Background()); err == nil || !strings.HasSuffix(err.Error(), ": 500 Internal Server Error") {
		t.Errorf("failing API: %v, want the status", err)
	}
	// Outside the API's base path the emulator answers 404.
	if err := (HTTPCheck{URL: strings.Replace(health, emu.BasePath(), "", 1)}).Check(context.Background()); err == nil || !strings.HasSuffix(err.Error(), ": 404 Not Found") {
		t.Errorf("wrong path: %v, want 404", err)
	}
	// A 429 is an answer: the API is reachable, only limiting this IP.
	if err := emu.SetFaults(emulator.Faults{FailCount: 1, FailStatus: 429}); err != nil {
		t.Fatal(err)
	}
	if err := (HTTPCheck{URL: health}).Check(context.Background()); err != nil {
		t.Errorf("API answering 429: %v, want nil (reachable)", err)
	}
	srv := httptest.NewServer(nil)
	srv.Close()
	if err := (HTTPCheck{URL: srv.URL + "/v1/health"}).Check(context.Background()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("closed port: %v, want connection refused", err)
	}
}

// TestPollerSetsTheGauge: the gauge is 0 before the first result, 1 while
// the API passes, 0 while it fails.
func TestPollerSetsTheGauge(t *testing.T) {
	emu, health := startEmulator(t)
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "up_test", Help: "test"})
	p := NewPoller("upstream API", HTTPCheck{URL: health}, PollOptions{Interval: 20 * time.Millisecond, Up: up})
	if got := promtest.ToFloat64(up); got != 0 {
		t.Errorf("before Run: gauge = %v, want 0", got)
	}
	runPoller(t, p)
	testutil.WaitFor(t, "gauge 1", func() bool { return promtest.ToFloat64(up) == 1 })
	if err := emu.SetFaults(emulator.Faults{FailCount: 1 << 30, FailStatus: 503}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "gauge 0", func() bool { return promtest.ToFloat64(up) == 0 })
}

func TestJitter(t *testing.T) {
	seen := map[bool]int{}
	for range 1000 {
		d := jitter(30 * time.Second)
		if d < 27*time.Second || d > 33*time.Second {
			t.Fatalf("jitter(30s) = %s, want within 27s..33s", d)
		}
		seen[d < 30*time.Second]++
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Errorf("jitter(30s) was always on one side of 30s: %v", seen)
	}
}
