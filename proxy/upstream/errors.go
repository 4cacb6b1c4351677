package upstream

import (
	"errors"
	"time"
)

// ErrAttemptTimeout marks an attempt that got no response headers within
// Options.Timeout.
var ErrAttemptTimeout = errors.New("no response headers within the upstream timeout")

// ErrBodyIdle marks a response body that sent nothing for
// Options.IdleTimeout.
var ErrBodyIdle = errors.New("the upstream response body sent nothing within the idle timeout")

// SignError reports an attempt that could not be signed, and so was not
// sent; no further attempt is made. Err is the signer's error.
type SignError struct{ Err error }

// Error describes the failure and its cause.
func (e *SignError) Error() string { return "signing the request: " + e.Err.Error() }

// Unwrap returns the signer's error.
func (e *SignError) Unwrap() error { return e.Err }

// RateLimitError reports a request that got no rate-limit token for its
// first attempt within the limiter's wait bound: nothing was sent. A token
// is expected after RetryAfter.
type RateLimitError struct{ RetryAfter time.Duration }

// Error says that no token was free in time.
func (e *RateLimitError) Error() string {
	return "no rate-limit token within the wait bound; retry after " + e.RetryAfter.String()
}

// StopError reports a request taken out of the line for its first
// rate-limit token because Options.Stop was done: nothing was sent. Err is
// the limiter's error.
type StopError struct{ Err error }

// Error describes the failure and its cause.
func (e *StopError) Error() string {
	return "stopped while waiting for a rate-limit token: " + e.Err.Error()
}

// Unwrap returns the limiter's error.
func (e *StopError) Unwrap() error { return e.Err }
