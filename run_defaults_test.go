package main

import (
	"testing"

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
	// Both sides of a row have one type, time.Duration or int64 (bytes),
	// so that != compares the values; a type mismatch would fail the row.
	tests := []struct {
		env          string
		got, library any
	}{
		{"KH_UPSTREAM_TIMEOUT", cfg.UpstreamTimeout, upstream.DefaultTimeout},
		{"KH_RETRY_BUDGET", cfg.RetryBudget, upstream.DefaultRetryBudget},
		{"KH_UPSTREAM_IDLE_TIMEOUT", cfg.UpstreamIdleTimeout, upstream.DefaultIdleTimeout},
		{"KH_IDEMPOTENCY_WINDOW", cfg.IdempotencyWindow, proxy.DefaultIdempotencyWindow},
		{"KH_MAX_INFLIGHT_WAIT", cfg.MaxInflightWait, proxy.DefaultBudgetWait},
		{"KH_MAX_BODY_BYTES", cfg.MaxBodyBytes, int64(proxy.DefaultMaxBodyBytes)},
		{"KH_MAX_INFLIGHT_BYTES", cfg.MaxInflightBytes, int64(proxy.DefaultMaxInflightBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			if tt.got != tt.library {
				t.Errorf("%s unset = %v, library default %v", tt.env, tt.got, tt.library)
			}
		})
	}
}
