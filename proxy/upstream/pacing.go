package upstream

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// spendsBudget reports whether a request counts against the API key's rate
// limit: all do except GET (or HEAD) /v1/health, which the API answers
// without authentication (spec §4.2, pseudo-scope "public").
func spendsBudget(method, target string) bool {
	path, _, _ := strings.Cut(target, "?")
	return !(path == "/v1/health" && (method == http.MethodGet || method == http.MethodHead))
}

// paced reports whether req waits for the limiter's tokens.
func (t *Transport) paced(req *http.Request, c *Call) bool {
	return t.limiter != nil && spendsBudget(req.Method, c.Target)
}

// paceFirst keeps the first attempt in line for a token. When none is free
// within the limiter's wait bound it fails at once with a RateLimitError,
// and nothing is sent.
func (t *Transport) paceFirst(req *http.Request, c *Call) error {
	if !t.paced(req, c) {
		return nil
	}
	// A shutdown takes the request out of the line: it was not sent, so
	// the caller can safely send it elsewhere at once.
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	defer context.AfterFunc(t.stop, cancel)()
	d, err := t.limiter.Wait(ctx)
	c.RateWait += d.Waited
	if err != nil && req.Context().Err() == nil && t.stop.Err() != nil {
		return &StopError{Err: err}
	}
	if err != nil {
		return err
	}
	if !d.Allowed {
		return &RateLimitError{RetryAfter: d.RetryAfter}
	}
	return nil
}

// waitToRetry waits wait (the backoff or what the upstream asked for), then
// for a token until deadline. It reports false when no token is free in
// time, or with ctx's error when the caller left.
func (t *Transport) waitToRetry(req *http.Request, c *Call, wait time.Duration, deadline time.Time) (bool, error) {
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-req.Context().Done():
			return false, req.Context().Err()
		case <-timer.C:
		}
	}
	if !t.paced(req, c) {
		return true, nil
	}
	d, err := t.limiter.WaitUntil(req.Context(), deadline)
	c.RateWait += d.Waited
	if err != nil {
		return false, err
	}
	if !d.Allowed {
		t.log.Debug("no rate-limit token within the retry budget", "request_id", c.RequestID, "path", c.Target, "attempts", c.Attempts)
	}
	return d.Allowed, nil
}

// observe lets the limiter learn from an upstream answer: X-RateLimit-*
// headers lower its bucket and a 429 pauses it for its Retry-After.
func (t *Transport) observe(req *http.Request, c *Call, resp *http.Response) {
	if resp == nil || !t.paced(req, c) {
		return
	}
	ctx := req.Context()
	if resp.StatusCode == http.StatusTooManyRequests {
		d := retryAfter(resp.Header, t.now())
		t.log.Info("the API answered 429: pausing the rate limit", "request_id", c.RequestID, "path", c.Target, "retry_after", d)
		t.limiter.Pause(ctx, d)
		return
	}
	t.limiter.Observe(ctx, resp.Header)
}
