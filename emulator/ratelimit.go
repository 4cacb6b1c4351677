package emulator

import (
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Default rate limits (spec §4.3).
const (
	DefaultRatePerMinute      = 60
	DefaultBurst              = 20
	DefaultRatePerDay         = 5000
	DefaultRatePerIPPerMinute = 600
)

// RateLimit configures the token buckets of spec §4.3. Zero fields take
// the defaults (60/min with burst 20 and 5000/day per key, 600/min per
// client IP); negative fields are an error. Set Disabled to turn all
// limiting off (then no X-RateLimit-* headers are sent either).
type RateLimit struct {
	Disabled       bool
	PerMinute      int // per-key refill rate, tokens per minute
	Burst          int // per-key bucket size
	PerDay         int // per-key daily bucket size (refills continuously over 24 h)
	PerIPPerMinute int // per-client-IP bucket size and refill per minute
}

func (rl RateLimit) withDefaults() (RateLimit, error) {
	if rl.PerMinute < 0 || rl.Burst < 0 || rl.PerDay < 0 || rl.PerIPPerMinute < 0 {
		return rl, errors.New("emulator: rate limits must not be negative")
	}
	if rl.PerMinute == 0 {
		rl.PerMinute = DefaultRatePerMinute
	}
	if rl.Burst == 0 {
		rl.Burst = DefaultBurst
	}
	if rl.PerDay == 0 {
		rl.PerDay = DefaultRatePerDay
	}
	if rl.PerIPPerMinute == 0 {
		rl.PerIPPerMinute = DefaultRatePerIPPerMinute
	}
	return rl, nil
}

// bucket is a token bucket; callers hold the limiter's lock.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) refill(now time.Time, perSec, capacity float64) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = math.Min(capacity, b.tokens+d.Seconds()*perSec)
	}
	b.last = now
}

// wait is how long until one token is available.
func (b *bucket) wait(perSec float64) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / perSec * float64(time.Second))
}

const maxIPBuckets = 10000

// limiter holds the per-key and per-IP buckets.
type limiter struct {
	cfg  RateLimit
	mu   sync.Mutex
	keys map[string]*[2]bucket // [0] minute bucket, [1] day bucket
	ips  map[string]*bucket
}

func newLimiter(cfg RateLimit) *limiter {
	return &limiter{cfg: cfg, keys: map[string]*[2]bucket{}, ips: map[string]*bucket{}}
}

// reset refills every bucket by forgetting them.
func (l *limiter) reset() {
	l.mu.Lock()
	l.keys, l.ips = map[string]*[2]bucket{}, map[string]*bucket{}
	l.mu.Unlock()
}

// takeIP takes one token from the client IP's bucket.
func (l *limiter) takeIP(remoteAddr string, now time.Time) *apiError {
	if l.cfg.Disabled {
		return nil
	}
	ip, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		ip = remoteAddr
	}
	perSec, capacity := float64(l.cfg.PerIPPerMinute)/60, float64(l.cfg.PerIPPerMinute)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.ips[ip]
	if b == nil {
		if len(l.ips) >= maxIPBuckets {
			for k, ob := range l.ips { // forget idle (full) buckets
				if ob.refill(now, perSec, capacity); ob.tokens >= capacity {
					delete(l.ips, k)
				}
			}
		}
		if len(l.ips) >= maxIPBuckets {
			return &apiError{code: codeRateLimited, reason: "ip_rate_limit",
				detail: "Too many distinct client addresses; retry later.", retryAfter: time.Second}
		}
		b = &bucket{tokens: capacity, last: now}
		l.ips[ip] = b
	}
	b.refill(now, perSec, capacity)
	if b.tokens < 1 {
		return &apiError{code: codeRateLimited, reason: "ip_rate_limit",
			detail: "Per-IP rate limit exceeded.", retryAfter: b.wait(perSec)}
	}
	b.tokens--
	return nil
}

// takeKey takes one token from the key's minute and day buckets and
// returns the X-RateLimit-* headers for the answer.
func (l *limiter) takeKey(keyID string, now time.Time) (http.Header, *apiError) {
	if l.cfg.Disabled {
		return nil, nil
	}
	mRate, mCap := float64(l.cfg.PerMinute)/60, float64(l.cfg.Burst)
	dRate, dCap := float64(l.cfg.PerDay)/86400, float64(l.cfg.PerDay)
	l.mu.Lock()
	defer l.mu.Unlock()
	bs := l.keys[keyID]
	if bs == nil { // keys are configured, so this map is bounded
		bs = &[2]bucket{{tokens: mCap, last: now}, {tokens: dCap, last: now}}
		l.keys[keyID] = bs
	}
	bs[0].refill(now, mRate, mCap)
	bs[1].refill(now, dRate, dCap)
	var ae *apiError
	if bs[0].tokens < 1 || bs[1].tokens < 1 {
		ae = &apiError{code: codeRateLimited, reason: "key_rate_limit",
			detail:     "Per-key rate limit exceeded; honour Retry-After.",
			retryAfter: max(bs[0].wait(mRate), bs[1].wait(dRate))}
		if bs[1].tokens < 1 {
			ae.detail = "Per-key daily request quota exceeded; honour Retry-After."
		}
	} else {
		bs[0].tokens--
		bs[1].tokens--
	}
	remaining := int64(math.Max(0, math.Floor(math.Min(bs[0].tokens, bs[1].tokens))))
	reset := time.Duration((mCap - bs[0].tokens) / mRate * float64(time.Second))
	h := http.Header{}
	h.Set("X-RateLimit-Remaining", strconv.FormatInt(remaining, 10))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(int64((reset+time.Second-1)/time.Second), 10))
	return h, ae
}
