package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/internal/testutil"
	"khproxy/ratelimit/redisstore/redistest"
)

// TestRunPacesAndUsesRedis runs khproxy as main does, configured only by
// the environment, in front of the emulator.
func TestRunPacesAndUsesRedis(t *testing.T) {
	emu, key, secret := emulatortest.New(t, func(o *emulator.Options) { o.RateLimit = emulator.RateLimit{} })
	up := httptest.NewServer(emu)
	defer up.Close()
	// A port nothing listens on: Redis "down" from the start.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadRedis := "redis://" + ln.Addr().String() + "/0"
	ln.Close()

	tests := []struct {
		name    string
		redis   func(t *testing.T) string
		wantLog string
	}{
		{"local bucket", func(*testing.T) string { return "" }, "pacing requests"},
		{"Redis unreachable", func(*testing.T) string { return deadRedis }, "Redis unreachable at start"},
		{"Redis", func(t *testing.T) string { return redistest.Start(t).URL() }, "through Redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := []string{"KH_KEY=" + key, "KH_SECRET=" + secret, "KH_UPSTREAM=" + up.URL + emulator.DefaultBasePath,
				"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=", "KH_LOG_FORMAT=json", "KH_RATE_LIMIT=1/h", "KH_RATE_BURST=2", "KH_RATE_WAIT=0s"}
			if u := tt.redis(t); u != "" {
				env = append(env, "KH_REDIS_URL="+u)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			logs := &testutil.SyncBuffer{}
			errc := make(chan error, 1)
			go func() { errc <- run(ctx, nil, env, io.Discard, logs) }()
			addr := waitListening(t, logs, errc)
			var statuses []int
			for range 3 {
				resp, err := http.Get("http://" + addr + "/v1/me")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				statuses = append(statuses, resp.StatusCode)
			}
			if want := []int{200, 200, 429}; statuses[0] != want[0] || statuses[1] != want[1] || statuses[2] != want[2] {
				t.Errorf("statuses = %v, want %v (burst 2, then khproxy's own 429)", statuses, want)
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, logs)
			}
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("run = %v", err)
			}
		})
	}
}

// TestRunSharesFlightsThroughRedis: two khproxy replicas as main runs them,
// sharing one Redis: an impatient caller's retry through the other replica,
// while its first request is still in flight, gets the one order.
func TestRunSharesFlightsThroughRedis(t *testing.T) {
	emu, key, secret := emulatortest.New(t)
	up := httptest.NewServer(emu)
	defer up.Close()
	redis := redistest.Start(t).URL()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var addrs []string
	var errcs []chan error
	for range 2 {
		env := []string{"KH_KEY=" + key, "KH_SECRET=" + secret, "KH_UPSTREAM=" + up.URL + emulator.DefaultBasePath,
			"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=", "KH_LOG_FORMAT=json", "KH_RATE_LIMIT=off", "KH_REDIS_URL=" + redis}
		logs := &testutil.SyncBuffer{}
		errc := make(chan error, 1)
		go func() { errc <- run(ctx, nil, env, io.Discard, logs) }()
		addrs = append(addrs, waitListening(t, logs, errc))
		errcs = append(errcs, errc)
	}
	if err := emu.SetFaults(emulator.Faults{Delay: time.Second, DelayCount: 1}); err != nil {
		t.Fatal(err)
	}
	impatient := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := impatient.Post("http://"+addrs[0]+"/v1/orders", "application/json", strings.NewReader(testutil.OrderBody)); err == nil {
		t.Fatal("the impatient caller got an answer")
	}
	resp, err := http.Post("http://"+addrs[1]+"/v1/orders", "application/json", strings.NewReader(testutil.OrderBody))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("retry through the other replica: %d %s", resp.StatusCode, body)
	}
	if n := emu.OrderCount(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
	cancel()
	for _, errc := range errcs {
		if err := <-errc; err != nil {
			t.Errorf("run = %v", err)
		}
	}
}
