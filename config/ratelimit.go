package config

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// RateLimiting is the part of the configuration that paces requests to the
// API key's rate limit (spec §4.3) and, with Redis, shares that budget and
// the retry memory between replicas.
type RateLimiting struct {
	RateLimit         Rate          `env:"KH_RATE_LIMIT" envDefault:"60/m" help:"Requests per period the API key may send, like 60/m, 1/s or 3600/h (the API's published limit is 60/m); off disables pacing."`
	RateBurst         int           `env:"KH_RATE_BURST" envDefault:"20" help:"Requests that may go at once before pacing starts (the API's burst)."`
	RateWait          time.Duration `env:"KH_RATE_WAIT" envDefault:"30s" help:"Longest a request waits in line for its turn; beyond it khproxy answers 429 with Retry-After at once (0: never wait)."`
	RedisURL          *url.URL      `env:"KH_REDIS_URL" help:"redis:// or rediss:// (TLS) URL of a Redis shared by every replica that uses this API key: it holds the rate-limit bucket and the retry memory. Unset: each khproxy keeps its own."`
	RedisPasswordFile string        `env:"KH_REDIS_PASSWORD_FILE" help:"File holding the Redis password (one trailing newline ignored), instead of one in KH_REDIS_URL."`
}

// Rate is a KH_RATE_LIMIT value: Count requests per Per. The zero Rate,
// written "off", disables pacing.
type Rate struct {
	Count int
	Per   time.Duration
}

// Off reports whether r disables pacing.
func (r Rate) Off() bool { return r.Count == 0 }

// Every returns the interval between two requests at rate r; 0 when Off.
func (r Rate) Every() time.Duration {
	if r.Off() {
		return 0
	}
	return r.Per / time.Duration(r.Count)
}

// String formats r as it is written, like "60/1m0s" or "off".
func (r Rate) String() string {
	if r.Off() {
		return "off"
	}
	return strconv.Itoa(r.Count) + "/" + r.Per.String()
}

// UnmarshalText parses "COUNT/PERIOD", where PERIOD is s, m, h or a
// duration like 90s, or "off".
func (r *Rate) UnmarshalText(text []byte) error {
	v := strings.TrimSpace(string(text))
	if strings.EqualFold(v, "off") {
		*r = Rate{}
		return nil
	}
	count, per, ok := strings.Cut(v, "/")
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if !ok || err != nil || n <= 0 {
		return fmt.Errorf("want COUNT/PERIOD with a positive COUNT, like 60/m, or off; got %q", v)
	}
	d, err := parsePeriod(per)
	if err != nil {
		return err
	}
	*r = Rate{Count: n, Per: d}
	return nil
}

// parsePeriod reads the PERIOD of a rate or limit: s, m, h or a positive
// duration like 90s or 24h.
func parsePeriod(per string) (time.Duration, error) {
	switch per = strings.TrimSpace(per); per {
	case "s":
		return time.Second, nil
	case "m":
		return time.Minute, nil
	case "h":
		return time.Hour, nil
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("period %q: want s, m, h or a positive duration like 90s", per)
	}
	return d, nil
}

// validate checks the rate-limit settings and the Redis connection
// settings. The URL is never quoted: it may hold a password.
func (c *RateLimiting) validate(v *validation) {
	if !c.RateLimit.Off() && c.RateLimit.Every() < time.Millisecond {
		v.fail("KH_RATE_LIMIT", "at most 1000 requests per second, got %s", c.RateLimit)
	}
	if c.RateBurst < 1 {
		v.fail("KH_RATE_BURST", "must be at least 1, got %d", c.RateBurst)
	}
	if c.RateWait < 0 {
		v.fail("KH_RATE_WAIT", "must not be negative, got %s", c.RateWait)
	}
	u := c.RedisURL
	if u == nil {
		if c.RedisPasswordFile != "" {
			v.fail("KH_REDIS_PASSWORD_FILE", "is set but KH_REDIS_URL is not")
		}
		return
	}
	_, hasPassword := u.User.Password()
	switch {
	case u.Scheme != "redis" && u.Scheme != "rediss":
		v.fail("KH_REDIS_URL", "must be a redis:// or rediss:// URL")
	case u.Hostname() == "":
		v.fail("KH_REDIS_URL", "must name a host, like redis://redis:6379/0")
	case u.Port() != "" && !isPort(u.Port()):
		v.fail("KH_REDIS_URL", "has an invalid port")
	case u.Path != "" && u.Path != "/" && !isDB(strings.TrimPrefix(u.Path, "/")):
		v.fail("KH_REDIS_URL", "the path must be a database number, like /0")
	case hasPassword && c.RedisPasswordFile != "":
		v.fail("KH_REDIS_URL", "holds a password and KH_REDIS_PASSWORD_FILE is set: use one")
	case u.Scheme == "redis" && !isLoopbackHost(u.Hostname()):
		v.warn("KH_REDIS_URL", "plain redis:// to a non-loopback host: the retry memory's keys and the password cross the network unencrypted; use rediss://")
	}
	if c.RedisPasswordFile != "" {
		if _, err := os.ReadFile(c.RedisPasswordFile); err != nil {
			v.fail("KH_REDIS_PASSWORD_FILE", "cannot read the password: %w", err)
		}
	}
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536
}

func isDB(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0
}
