package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"khproxy/problem"
	"khproxy/proxy/upstream"
)

// Kind is a class of failure that khproxy itself answers, as opposed to an
// answer from the upstream API, which is passed through untouched.
type Kind string

// The kinds of failure khproxy answers itself. Each has one stable HTTP status
// and problem type; statuses are mapped here and nowhere else.
const (
	KindBadRequest       Kind = "bad_request"           // 400: a request khproxy will not forward
	KindMethodNotAllowed Kind = "method_not_allowed"    // 405: CONNECT
	KindRequestTimeout   Kind = "request_timeout"       // 408: the client was too slow to send its request
	KindBodyTooLarge     Kind = "body_too_large"        // 413: over Options.MaxBodyBytes or the memory budget
	KindUnreachable      Kind = "upstream_unreachable"  // 502: no answer, connection refused or broken
	KindOverloaded       Kind = "overloaded"            // 503: khproxy itself is out of room: memory, connections, files
	KindTimeout          Kind = "upstream_timeout"      // 504: no response headers in time, or a stalled body
	KindSigning          Kind = "signing_failed"        // 500: e.g. no usable secret
	KindClientGone       Kind = "client_closed_request" // 499: logged only; nobody reads it
	KindRateLimited      Kind = "rate_limited"          // 429: no token within the wait bound; the API was not called
	KindShuttingDown     Kind = "shutting_down"         // 503: cut by a shutdown while sending its body or waiting for a token; nothing was sent
	KindInDoubt          Kind = "in_doubt"              // 503: an automatic-key request got no settling answer within the retry budget
)

var kinds = map[Kind]struct {
	status int
	title  string
}{
	KindBadRequest:       {http.StatusBadRequest, "Request refused by khproxy"},
	KindMethodNotAllowed: {http.StatusMethodNotAllowed, "Method not allowed by khproxy"},
	KindRequestTimeout:   {http.StatusRequestTimeout, "Request not received in time"},
	KindBodyTooLarge:     {http.StatusRequestEntityTooLarge, "Request body too large"},
	KindUnreachable:      {http.StatusBadGateway, "Upstream unreachable"},
	KindOverloaded:       {http.StatusServiceUnavailable, "khproxy overloaded"},
	KindTimeout:          {http.StatusGatewayTimeout, "Upstream timeout"},
	KindSigning:          {http.StatusInternalServerError, "Request could not be signed"},
	KindRateLimited:      {http.StatusTooManyRequests, "Rate limited by khproxy"},
	KindShuttingDown:     {http.StatusServiceUnavailable, "khproxy is shutting down"},
	KindInDoubt:          {http.StatusServiceUnavailable, "Purchase in doubt: send the same request again"},
	// 499 is nginx's "client closed request": nobody reads it, but the
	// access log shows what happened.
	KindClientGone: {499, "Client closed request"},
}

// TypePrefix starts the problem type of every error khproxy answers itself;
// the kind follows it. Upstream errors use the API's own type URIs instead.
const TypePrefix = "urn:khproxy:problem:"

// Error is a failure khproxy answers itself. Detail is safe to show to the
// client; Err holds the cause for the log; a positive RetryAfter is sent as
// the Retry-After header.
type Error struct {
	Kind       Kind
	Detail     string
	Err        error
	RetryAfter time.Duration
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

// classify returns err as an *Error, classified from its cause when it is
// not one.
func classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return errorFor(err)
}

// inDoubt is the answer to an automatic-key request that got no settling
// answer (upstream.InDoubt) within the retry budget: cause is the last
// failure, ex.upstreamStatus the API's last answer (0: none). The caller
// must send the same request again: khproxy keeps the key for it.
func inDoubt(ex *exchange, cause error) *Error {
	last := "no answer"
	if ex.upstreamStatus > 0 {
		last = fmt.Sprintf("its last answer was %d", ex.upstreamStatus)
	}
	return &Error{Kind: KindInDoubt, Err: cause, RetryAfter: time.Second,
		Detail: fmt.Sprintf("the API gave no final answer within khproxy's retry budget (%s, attempts: %d): the request may or may not have taken effect. "+
			"Send the same request again (the same body bytes): khproxy reuses Idempotency-Key %s for it, so it cannot take effect twice", last, ex.up.Attempts, ex.idemKey)}
}

// errorFor turns a transport error into an Error of the matching Kind.
func errorFor(err error) *Error {
	var (
		ne      net.Error
		signErr *upstream.SignError
		rateErr *upstream.RateLimitError
		stopErr *upstream.StopError
	)
	switch {
	case errors.As(err, &signErr):
		return &Error{Kind: KindSigning, Detail: "khproxy could not sign the request; see its log", Err: signErr.Err}
	case errors.As(err, &rateErr):
		secs := int((rateErr.RetryAfter + time.Second - 1) / time.Second)
		return &Error{Kind: KindRateLimited, RetryAfter: rateErr.RetryAfter,
			Detail: fmt.Sprintf("the API key's rate limit has no free request within khproxy's wait bound; the request was not sent upstream; retry in %d s", secs)}
	case errors.As(err, &stopErr):
		return &Error{Kind: KindShuttingDown, Err: stopErr.Err,
			Detail: "khproxy is shutting down; the request was waiting for the API key's rate limit and was not sent upstream: send it again"}
	case localShortage(err):
		// Not the upstream's fault: no file descriptor or buffer for a
		// connection on this machine.
		return &Error{Kind: KindOverloaded, Detail: "khproxy is out of local resources (open files) and could not connect upstream: retry shortly", Err: err, RetryAfter: time.Second}
	case errors.Is(err, context.Canceled):
		return &Error{Kind: KindClientGone, Detail: "the client went away before the answer", Err: err}
	case errors.Is(err, upstream.ErrAttemptTimeout), errors.Is(err, upstream.ErrBodyIdle), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &Error{Kind: KindTimeout, Detail: "the upstream API did not answer in time", Err: err}
	default:
		return &Error{Kind: KindUnreachable, Detail: "the upstream API could not be reached or broke the connection", Err: err}
	}
}

// localShortage reports whether err says this machine ran out of file
// descriptors or buffer memory.
func localShortage(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// Refuse answers a request that khproxy's server refuses before the proxy
// sees it, as problem+json: status 503 on a connection over the connection
// limit, 408 when a request's headers did not arrive in time (r is nil: there
// is no request). It fits httpserve.Server.Refuse. Safe for concurrent use.
func (p *Proxy) Refuse(w http.ResponseWriter, r *http.Request, status int) {
	e := &Error{Kind: KindRequestTimeout, Detail: "the request was not received within khproxy's read timeout"}
	if status == http.StatusServiceUnavailable {
		e = &Error{Kind: KindOverloaded, Detail: "khproxy is serving as many connections as it may: retry shortly", RetryAfter: time.Second}
	}
	ex := &exchange{err: e, id: newRequestID()}
	w.Header().Set(RequestIDHeader, ex.id)
	p.fail(w, r, ex, e)
	if r != nil {
		p.metrics.RequestStarted()
		ex.target = r.URL.EscapedPath() // never the authority: it may hold user info
		route := routeOf(ex)
		p.accessLog(r, ex, route, e.Kind.Status(), 0)
		p.observe(r, ex, route, e.Kind.Status(), 0)
	}
}
