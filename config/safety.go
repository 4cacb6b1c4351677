package config

import (
	"net/url"
	"time"
)

// Safety is the part of the configuration that keeps khproxy standing under
// load and slow or hostile clients: how much request-body memory it holds at
// once, how long a client may take to send a request, how many connections
// it serves, and how long an upstream body may stall.
type Safety struct {
	MaxInflightBytes    int64         `env:"KH_MAX_INFLIGHT_BYTES" envDefault:"2097152" help:"Memory budget, in bytes, for the request bodies held at once, room taken as their bytes arrive. A body that cannot get room for what arrived waits up to KH_MAX_INFLIGHT_WAIT, then gets 503; one larger than the budget gets 413 at once."`
	MaxInflightWait     time.Duration `env:"KH_MAX_INFLIGHT_WAIT" envDefault:"5s" help:"How long a body waits for room in KH_MAX_INFLIGHT_BYTES, all its steps together, before it gets 503 with Retry-After. Must be below KH_READ_TIMEOUT; unset, it is half of KH_READ_TIMEOUT when that is 5s or less."`
	ReadTimeout         time.Duration `env:"KH_READ_TIMEOUT" envDefault:"30s" help:"How long a client may take to send a whole request, headers and body; past it, 408 and the connection is closed."`
	MaxConns            int           `env:"KH_MAX_CONNS" envDefault:"512" help:"Most client connections served at once; at it, the connection idle longest is closed to admit a new one; with none idle, a few more get 503 at once and are closed, the rest are closed unanswered. Keep it well below the open-file limit (ulimit -n)."`
	UpstreamIdleTimeout time.Duration `env:"KH_UPSTREAM_IDLE_TIMEOUT" envDefault:"60s" help:"How long an upstream response body may send nothing before the response is cut."`
}

// deriveDefaults makes a default that depends on another setting follow
// it: KH_MAX_INFLIGHT_WAIT, left unset, stays below a short KH_READ_TIMEOUT
// (half of it) instead of contradicting it. Only a contradiction the user
// wrote is refused. vars is the environment as parse read it.
func (c *Config) deriveDefaults(vars map[string]string) {
	if _, set := vars["KH_MAX_INFLIGHT_WAIT"]; !set && c.ReadTimeout > 0 && c.MaxInflightWait >= c.ReadTimeout {
		c.MaxInflightWait = c.ReadTimeout / 2
	}
}

// validateSafety checks the Safety group, and how it fits the body limit.
func (c *Config) validateSafety(v *validation) {
	s := c.Safety
	switch {
	case s.MaxInflightBytes <= 0:
		v.fail("KH_MAX_INFLIGHT_BYTES", "must be a positive number of bytes, got %d", s.MaxInflightBytes)
	case s.MaxInflightBytes < c.MaxBodyBytes:
		v.warn("KH_MAX_INFLIGHT_BYTES", "is below KH_MAX_BODY_BYTES: bodies larger than the budget get 413")
	}
	if s.ReadTimeout <= 0 {
		v.fail("KH_READ_TIMEOUT", "must be positive, got %s", s.ReadTimeout)
	}
	switch {
	case s.MaxInflightWait <= 0:
		v.fail("KH_MAX_INFLIGHT_WAIT", "must be positive, got %s", s.MaxInflightWait)
	case s.ReadTimeout > 0 && s.MaxInflightWait >= s.ReadTimeout:
		v.fail("KH_MAX_INFLIGHT_WAIT", "must be below KH_READ_TIMEOUT (%s), got %s", s.ReadTimeout, s.MaxInflightWait)
	}
	if s.MaxConns <= 0 {
		v.fail("KH_MAX_CONNS", "must be a positive number of connections, got %d", s.MaxConns)
	}
	if s.UpstreamIdleTimeout <= 0 {
		v.fail("KH_UPSTREAM_IDLE_TIMEOUT", "must be positive, got %s", s.UpstreamIdleTimeout)
	}
}

// RedactURL returns u as text with its user info, user name included,
// replaced by "xxxxx": URL.Redacted keeps the user name, which is often a
// token itself.
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	if u.User == nil {
		return u.String()
	}
	r := *u
	r.User = url.User("xxxxx")
	return r.String()
}
