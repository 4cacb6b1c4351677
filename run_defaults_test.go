package main

import (
	"testing"
	"time"

	"khproxy/config"
	"khproxy/proxy"
	"khproxy/proxy/upstream"
)

// TestLibraryDefaultsAreConfigDefaults: a zero value in proxy.Options (or
// upstream.Options) means what leaving its variable unset means, so that
// config's envDefault and the library's Default constant cannot drift
// apart: each default is one fact, here checked where both are in reach
// (config imports nothing of ours).
func TestLibraryDefaultsAreConfigDefaults(t *testing.T) {
	cfg, _, err := config.Load([]string{"KH_KEY=kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "KH_SECRET=s3cr3t-value"})
	if err != nil {
		t.Fatal(err)
	}
	durations := []struct {
		env          string
		got, library time.Duration
	}{
		{"KH_UPSTREAM_TIMEOUT", cfg.UpstreamTimeout, upstream.DefaultTimeout},
		{"KH_RETRY_BUDGET", cfg.RetryBudget, upstream.DefaultRetryBudget},
		{"KH_UPSTREAM_IDLE_TIMEOUT", cfg.UpstreamIdleTimeout, upstream.DefaultIdleTimeout},
		{"KH_IDEMPOTENCY_WINDOW", cfg.IdempotencyWindow, proxy.DefaultIdempotencyWindow},
		{"KH_MAX_INFLIGHT_WAIT", cfg.MaxInflightWait, proxy.DefaultBudgetWait},
	}
	for _, d := range durations {
		t.Run(d.env, func(t *testing.T) {
			if d.got != d.library {
				t.Errorf("%s unset = %s, library default %s", d.env, d.got, d.library)
			}
		})
	}
	sizes := []struct {
		env          string
		got, library int64
	}{
		{"KH_MAX_BODY_BYTES", cfg.MaxBodyBytes, proxy.DefaultMaxBodyBytes},
		{"KH_MAX_INFLIGHT_BYTES", cfg.MaxInflightBytes, proxy.DefaultMaxInflightBytes},
	}
	for _, s := range sizes {
		t.Run(s.env, func(t *testing.T) {
			if s.got != s.library {
				t.Errorf("%s unset = %d, library default %d", s.env, s.got, s.library)
			}
		})
	}
}
