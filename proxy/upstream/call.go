package upstream

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// Call is one client request as the Transport sees it: what it must know to
// sign and resend the request, set by the caller before RoundTrip, and what
// its attempts did, set by the Transport. The caller puts it in the request
// context with WithCall. The zero value is a request without body, target
// or key; a Call is used for one RoundTrip and must not be copied.
//
// The inputs must not change once RoundTrip has started. Of the outputs,
// Sent may be read at any time from any goroutine; Attempts, Connected and RateWait
// once RoundTrip has returned; BodyErr once the response body is closed.
type Call struct {
	// Target is the signed PATH: the upstream request-target after the
	// base. It is also the "path" of the Transport's log lines and decides
	// whether the request is paced.
	Target string
	// BodyHash is the hex SHA-256 of Body, as signed.
	BodyHash string
	// Body is the request body, read afresh by each attempt; it is sealed
	// once the last attempt has been made. Required.
	Body Body
	// OwnKey says that IdempotencyKey was made by khproxy for this very
	// body: then the API cannot answer it 409 for another body, and every
	// 409 is taken for "still in progress", whatever its body says (the
	// spec does not document that answer).
	OwnKey bool
	// RequestID names the request in the Transport's log lines
	// ("request_id"), as in the caller's.
	RequestID string
	// IdempotencyKey is sent as the Idempotency-Key header of every
	// attempt, "" for none; a request with one is safe to repeat.
	IdempotencyKey string

	// Attempts counts the attempts made, signed or not.
	Attempts int
	// Sent reports that an attempt was handed to the next RoundTripper:
	// from then on the request may have reached the upstream.
	Sent atomic.Bool
	// Connected reports that an attempt got a connection to the upstream,
	// after which its bytes may have reached the API.
	Connected bool
	// RateWait is the time spent waiting for rate-limit tokens.
	RateWait time.Duration
	// BodyErr is why reading the upstream response body failed (nil when
	// it did not): ErrBodyIdle, or the read's error.
	BodyErr error
}

// Body is a request body held whole, which each attempt reads afresh.
// *heldbody.Body implements it.
type Body interface {
	// AttemptReader returns a fresh reader over the body for one attempt,
	// and done, called once the attempt has finished reading it or never
	// will.
	AttemptReader() (io.ReadCloser, func())
	// Len returns the body's length.
	Len() int64
	// Seal says that no more attempts will read the body.
	Seal()
}

type callKey struct{}

// WithCall returns a copy of ctx that carries c, for the Transport to find
// in the context of the requests it is given.
func WithCall(ctx context.Context, c *Call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

func callFrom(ctx context.Context) *Call {
	c, _ := ctx.Value(callKey{}).(*Call)
	return c
}
