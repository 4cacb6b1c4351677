package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"khproxy/config"
)

func TestRateUnmarshalText(t *testing.T) {
	tests := []struct {
		in    string
		want  config.Rate
		every time.Duration
	}{
		{"60/m", config.Rate{Count: 60, Per: time.Minute}, time.Second},
		{"1/s", config.Rate{Count: 1, Per: time.Second}, time.Second},
		{"3600/h", config.Rate{Count: 3600, Per: time.Hour}, time.Second},
		{" 30 / 90s ", config.Rate{Count: 30, Per: 90 * time.Second}, 3 * time.Second},
		{"off", config.Rate{}, 0},
		{"OFF", config.Rate{}, 0},
	}
	for _, tt := range tests {
		var r config.Rate
		if err := r.UnmarshalText([]byte(tt.in)); err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if r != tt.want || r.Every() != tt.every {
			t.Errorf("%q = %+v every %s, want %+v every %s", tt.in, r, r.Every(), tt.want, tt.every)
		}
	}
	for _, bad := range []string{"", "60", "60/", "/m", "0/m", "-1/m", "x/m", "60/min", "60/0s", "60/-1m", "sixty/m"} {
		var r config.Rate
		if err := r.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q: no error, got %+v", bad, r)
		}
	}
}

func TestRateLimitingErrorsNameTheVariable(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"rate not a rate", environ("KH_RATE_LIMIT", "60"), "KH_RATE_LIMIT"},
		{"rate per minute spelled out", environ("KH_RATE_LIMIT", "60/min"), "KH_RATE_LIMIT"},
		{"rate too fast", environ("KH_RATE_LIMIT", "5000/s"), "KH_RATE_LIMIT"},
		{"rate empty", environ("KH_RATE_LIMIT", ""), "KH_RATE_LIMIT"},
		{"burst zero", environ("KH_RATE_BURST", "0"), "KH_RATE_BURST"},
		{"burst not a number", environ("KH_RATE_BURST", "twenty"), "KH_RATE_BURST"},
		{"wait negative", environ("KH_RATE_WAIT", "-1s"), "KH_RATE_WAIT"},
		{"wait not a duration", environ("KH_RATE_WAIT", "30"), "KH_RATE_WAIT"},
		{"redis http", environ("KH_REDIS_URL", "http://redis:6379"), "KH_REDIS_URL"},
		{"redis without host", environ("KH_REDIS_URL", "redis:///0"), "KH_REDIS_URL"},
		{"redis bad port", environ("KH_REDIS_URL", "redis://redis:99999"), "KH_REDIS_URL"},
		{"redis bad db", environ("KH_REDIS_URL", "redis://redis:6379/cache"), "KH_REDIS_URL"},
		{"redis unparsable", environ("KH_REDIS_URL", "redis://:s3cr3t@redis:port/0"), "KH_REDIS_URL"},
		{"two passwords", environ("KH_REDIS_URL", "redis://:s3cr3t@127.0.0.1:6379", "KH_REDIS_PASSWORD_FILE", pw), "KH_REDIS_URL"},
		{"password file missing", environ("KH_REDIS_URL", "redis://127.0.0.1:6379", "KH_REDIS_PASSWORD_FILE", filepath.Join(dir, "nope")), "KH_REDIS_PASSWORD_FILE"},
		{"password file without URL", environ("KH_REDIS_PASSWORD_FILE", pw), "KH_REDIS_PASSWORD_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantErrorNaming(t, tt.env, tt.wantVar) })
	}
}

func TestRateLimitingValues(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env      []string
		check    func(config.RateLimiting) bool
		wantWarn string
	}{
		{"off", environ("KH_RATE_LIMIT", "off"), func(r config.RateLimiting) bool { return r.RateLimit.Off() }, ""},
		{"no wait", environ("KH_RATE_WAIT", "0s"), func(r config.RateLimiting) bool { return r.RateWait == 0 }, ""},
		{"local redis", environ("KH_REDIS_URL", "redis://127.0.0.1:6379/2"), func(r config.RateLimiting) bool { return r.RedisURL.Host == "127.0.0.1:6379" }, ""},
		{"tls redis with password file", environ("KH_REDIS_URL", "rediss://redis.internal:6380", "KH_REDIS_PASSWORD_FILE", pw), func(r config.RateLimiting) bool { return r.RedisPasswordFile == pw }, ""},
		{"plain redis across the network", environ("KH_REDIS_URL", "redis://redis.internal:6379"), func(r config.RateLimiting) bool { return r.RedisURL != nil }, "KH_REDIS_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, warns, err := config.Load(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c.RateLimiting) {
				t.Errorf("RateLimiting = %+v", c.RateLimiting)
			}
			switch {
			case tt.wantWarn == "" && len(warns) != 0:
				t.Errorf("warnings = %+v, want none", warns)
			case tt.wantWarn != "" && (len(warns) != 1 || warns[0].Var != tt.wantWarn):
				t.Errorf("warnings = %+v, want one for %s", warns, tt.wantWarn)
			}
		})
	}
}
