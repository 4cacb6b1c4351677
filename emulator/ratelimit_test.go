package emulator

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestRateLimitBurst(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.RateLimit = RateLimit{} }) // spec defaults
	for i := 1; i <= DefaultBurst; i++ {
		resp, body := env.do(t, rq{path: "/v1/me"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d, body %s", i, resp.StatusCode, body)
		}
		if got, want := resp.Header.Get("X-RateLimit-Remaining"), strconv.Itoa(DefaultBurst-i); got != want {
			t.Errorf("request %d: X-RateLimit-Remaining got %q, want %q", i, got, want)
		}
		if got, want := resp.Header.Get("X-RateLimit-Reset"), strconv.Itoa(i); got != want { // 1 token/s
			t.Errorf("request %d: X-RateLimit-Reset got %q, want %q", i, got, want)
		}
	}
	resp, body := env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusTooManyRequests, codeRateLimited, "key_rate_limit")
	if got, want := resp.Header.Get("Retry-After"), "1"; got != want {
		t.Errorf("Retry-After: got %q, want %q", got, want)
	}
	if got, want := resp.Header.Get("X-RateLimit-Remaining"), "0"; got != want {
		t.Errorf("X-RateLimit-Remaining: got %q, want %q", got, want)
	}
	env.clock.Advance(time.Second)
	if resp, body := env.do(t, rq{path: "/v1/me"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("after refill: status %d, body %s", resp.StatusCode, body)
	}
	// Health is unauthenticated: no per-key headers.
	resp, _ = env.do(t, rq{path: "/v1/health", unsigned: true})
	if resp.Header.Get("X-RateLimit-Remaining") != "" {
		t.Error("health carries X-RateLimit-Remaining")
	}
}

func TestRateLimitDaily(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.RateLimit = RateLimit{PerDay: 3, Burst: 10, PerMinute: 600} })
	for i := 0; i < 3; i++ {
		if resp, _ := env.do(t, rq{path: "/v1/me"}); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	resp, body := env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusTooManyRequests, codeRateLimited, "key_rate_limit")
	if got, want := resp.Header.Get("Retry-After"), "28800"; got != want { // a day / 3
		t.Errorf("Retry-After: got %q, want %q", got, want)
	}
}

func TestRateLimitPerIP(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.RateLimit = RateLimit{PerIPPerMinute: 5} })
	for i := 0; i < 5; i++ {
		if resp, _ := env.do(t, rq{path: "/v1/health", unsigned: true}); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	resp, body := env.do(t, rq{path: "/v1/health", unsigned: true})
	wantProblem(t, resp, body, http.StatusTooManyRequests, codeRateLimited, "ip_rate_limit")
	if got, want := resp.Header.Get("Retry-After"), "12"; got != want { // 5/min: one token per 12 s
		t.Errorf("Retry-After: got %q, want %q", got, want)
	}
}

func TestRateLimitDisabled(t *testing.T) {
	env := newEnv(t, nil) // Disabled
	for i := 0; i < DefaultBurst+5; i++ {
		resp, _ := env.do(t, rq{path: "/v1/me"})
		if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "" {
			t.Fatalf("request %d: status %d, remaining %q", i, resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
		}
	}
}
