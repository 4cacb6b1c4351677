package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"khproxy/proxy/flight"
)

// RetryMemory remembers, for a while, the Idempotency-Key of automatic-key
// requests whose answer did not reach their caller (fingerprint -> key), so
// that the caller's identical retry reuses it. ratelimit.RetryMemory
// implements it, in process or shared through Redis. Implementations are
// safe for concurrent use, never fail, and should answer quickly: the
// flight registry calls them under its lock. It is flight.RetryMemory,
// named here for Options.
type RetryMemory = flight.RetryMemory

// spendsBudget reports whether a request counts against the API key's rate
// limit: all do except GET (or HEAD) /v1/health, which the API answers
// without authentication (spec §4.2, pseudo-scope "public").
func spendsBudget(method, target string) bool {
	path, _, _ := strings.Cut(target, "?")
	return !(path == "/v1/health" && (method == http.MethodGet || method == http.MethodHead))
}

// paced reports whether req waits for the limiter's tokens.
func (t *signingTransport) paced(req *http.Request, ex *exchange) bool {
	return t.limiter != nil && spendsBudget(req.Method, ex.target)
}

// paceFirst keeps the first attempt in line for a token. When none is free
// within the limiter's wait bound it fails at once with KindRateLimited, and
// nothing is sent.
func (t *signingTransport) paceFirst(req *http.Request, ex *exchange) error {
	if !t.paced(req, ex) {
		return nil
	}
	// A shutdown takes the request out of the line: it was not sent, so
	// the caller can safely send it elsewhere at once.
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	defer context.AfterFunc(t.stop, cancel)()
	d, err := t.limiter.Wait(ctx)
	ex.rateWait += d.Waited
	if err != nil && req.Context().Err() == nil && t.stop.Err() != nil {
		return &Error{Kind: KindShuttingDown, Err: err,
			Detail: "khproxy is shutting down; the request was waiting for the API key's rate limit and was not sent upstream: send it again"}
	}
	if err != nil {
		return err
	}
	if !d.Allowed {
		secs := int((d.RetryAfter + time.Second - 1) / time.Second)
		return &Error{Kind: KindRateLimited, RetryAfter: d.RetryAfter,
			Detail: fmt.Sprintf("the API key's rate limit has no free request within khproxy's wait bound; the request was not sent upstream; retry in %d s", secs)}
	}
	return nil
}

// waitToRetry waits wait (the backoff or what the upstream asked for), then
// for a token until deadline. It reports false when no token is free in
// time, or with ctx's error when the caller left.
func (t *signingTransport) waitToRetry(req *http.Request, ex *exchange, wait time.Duration, deadline time.Time) (bool, error) {
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-req.Context().Done():
			return false, req.Context().Err()
		case <-timer.C:
		}
	}
	if !t.paced(req, ex) {
		return true, nil
	}
	d, err := t.limiter.WaitUntil(req.Context(), deadline)
	ex.rateWait += d.Waited
	if err != nil {
		return false, err
	}
	if !d.Allowed {
		t.log.Debug("no rate-limit token within the retry budget", "path", ex.target, "attempts", ex.attempts)
	}
	return d.Allowed, nil
}

// observe lets the limiter learn from an upstream answer: X-RateLimit-*
// headers lower its bucket and a 429 pauses it for its Retry-After.
func (t *signingTransport) observe(req *http.Request, ex *exchange, resp *http.Response) {
	if resp == nil || !t.paced(req, ex) {
		return
	}
	ctx := req.Context()
	if resp.StatusCode == http.StatusTooManyRequests {
		d := retryAfter(resp.Header, t.now())
		t.log.Info("the API answered 429: pausing the rate limit", "path", ex.target, "retry_after", d)
		t.limiter.Pause(ctx, d)
		return
	}
	t.limiter.Observe(ctx, resp.Header)
}
