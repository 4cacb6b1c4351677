package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"

	"khproxy/problem"
)

// Kind is a class of failure that khproxy itself answers, as opposed to an
// answer from the upstream API, which is passed through untouched.
type Kind string

// The kinds of failure khproxy answers itself. Each has one stable HTTP status
// and problem type; statuses are mapped here and nowhere else.
const (
	KindBadRequest       Kind = "bad_request"           // 400: a request khproxy will not forward
	KindMethodNotAllowed Kind = "method_not_allowed"    // 405: CONNECT
	KindBodyTooLarge     Kind = "body_too_large"        // 413: over Options.MaxBodyBytes
	KindUnreachable      Kind = "upstream_unreachable"  // 502: no answer, connection refused or broken
	KindTimeout          Kind = "upstream_timeout"      // 504: no response headers in time
	KindSigning          Kind = "signing_failed"        // 500: e.g. no usable secret
	KindClientGone       Kind = "client_closed_request" // 499: logged only; nobody reads it
)

var kinds = map[Kind]struct {
	status int
	title  string
}{
	KindBadRequest:       {http.StatusBadRequest, "Request refused by khproxy"},
	KindMethodNotAllowed: {http.StatusMethodNotAllowed, "Method not allowed by khproxy"},
	KindBodyTooLarge:     {http.StatusRequestEntityTooLarge, "Request body too large"},
	KindUnreachable:      {http.StatusBadGateway, "Upstream unreachable"},
	KindTimeout:          {http.StatusGatewayTimeout, "Upstream timeout"},
	KindSigning:          {http.StatusInternalServerError, "Request could not be signed"},
	// 499 is nginx's "client closed request": nobody reads it, but the
	// access log shows what happened.
	KindClientGone: {499, "Client closed request"},
}

// TypePrefix starts the problem type of every error khproxy answers itself;
// the kind follows it. Upstream errors use the API's own type URIs instead.
const TypePrefix = "urn:khproxy:problem:"

// Error is a failure khproxy answers itself. Detail is safe to show to the
// client; Err holds the cause for the log.
type Error struct {
	Kind   Kind
	Detail string
	Err    error
}

// Error returns the kind, the detail and the cause, for logs.
func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Kind) + ": " + e.Detail + ": " + e.Err.Error()
	}
	return string(e.Kind) + ": " + e.Detail
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Status returns the HTTP status the kind is answered with.
func (k Kind) Status() int { return kinds[k].status }

// problemFor builds the client-facing body for err. Errors that are not
// *Error are classified from their cause.
func problemFor(err error) (*Error, problem.Details) {
	var e *Error
	if !errors.As(err, &e) {
		e = errorFor(err)
	}
	k, ok := kinds[e.Kind]
	if !ok {
		k = kinds[KindUnreachable]
	}
	return e, problem.Details{
		Type:   TypePrefix + string(e.Kind),
		Title:  k.title,
		Status: k.status,
		Detail: e.Detail,
	}
}

// errorFor turns a transport error into an Error of the matching Kind.
func errorFor(err error) *Error {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return &Error{Kind: KindClientGone, Detail: "the client went away before the answer", Err: err}
	case errors.Is(err, errAttemptTimeout), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &Error{Kind: KindTimeout, Detail: "the upstream API did not answer in time", Err: err}
	default:
		return &Error{Kind: KindUnreachable, Detail: "the upstream API could not be reached or broke the connection", Err: err}
	}
}
