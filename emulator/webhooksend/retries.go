package webhooksend

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxRetries caps a retry schedule's length.
const maxRetries = 20

// FastRetries returns the retry waits a Sender uses when Options.Retries
// is nil: 100 ms, 300 ms, 1 s (four attempts within about 1.5 s), so that
// tests see retries without waiting. Each call returns a new slice.
func FastRetries() []time.Duration {
	return []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, time.Second}
}

// ProductionRetries returns retry waits that grow like a production
// sender's: 1 m, 5 m, 30 m, 2 h, 6 h, 12 h, 24 h (eight attempts over
// about 45 hours). Each call returns a new slice.
func ProductionRetries() []time.Duration {
	return []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
		6 * time.Hour, 12 * time.Hour, 24 * time.Hour}
}

// ParseRetries reads a retry schedule as "khproxy emulator -webhook-retries"
// takes it: "production", "fast", "none" (an empty non-nil schedule: one
// attempt, no retries) or a comma-separated list of waits such as
// "1s,10s,1m", which must pass ValidateRetries. The empty string is an
// error.
func ParseRetries(s string) ([]time.Duration, error) {
	switch strings.TrimSpace(s) {
	case "production":
		return ProductionRetries(), nil
	case "fast":
		return FastRetries(), nil
	case "none":
		return []time.Duration{}, nil
	}
	var out []time.Duration
	for _, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("bad retry wait %q (want production, fast, none or e.g. 1s,10s,1m)", part)
		}
		out = append(out, d)
	}
	return out, ValidateRetries(out)
}

// ValidateRetries returns an error when waits has more than 20 entries or
// a negative one; nil and empty schedules are valid.
func ValidateRetries(waits []time.Duration) error {
	if len(waits) > maxRetries {
		return fmt.Errorf("emulator: at most %d webhook retries", maxRetries)
	}
	for _, d := range waits {
		if d < 0 {
			return errors.New("emulator: webhook retry waits must not be negative")
		}
	}
	return nil
}
