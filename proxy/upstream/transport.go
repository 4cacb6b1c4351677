// Package upstream is khproxy's upstream attempt loop: an http.RoundTripper
// that signs every attempt with a fresh timestamp and nonce, retries what is
// safe to retry (with backoff, Retry-After and a time budget), learns the
// upstream's clock skew, paces attempts to the API key's rate limit, and
// bounds how long the response body may send nothing; and the
// http.Transport under it, whose connections write a held request body in
// one write.
//
// The package knows nothing of the proxy in front of it: each request
// carries a Call in its context that says what the Transport must know of
// it (the signed target, the body and its hash, the Idempotency-Key) and
// records what its attempts did. Its own failures are the errors of
// errors.go, which the proxy maps to what the client is told.
package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"khproxy/ratelimit"
	"khproxy/signer"
)

// Backoff bounds between attempts; Retry-After can ask for longer.
const (
	backoffBase = 100 * time.Millisecond
	backoffMax  = 5 * time.Second
)

// AttemptFirst is the reason of each request's first attempt, as
// Metrics.UpstreamAttempt is told; a retry's is why it was retried.
const AttemptFirst = "first"

// Metrics receives what the Transport measures. Implementations must be
// safe for concurrent use.
type Metrics interface {
	// UpstreamAttempt reports one signed attempt handed to the next
	// RoundTripper: AttemptFirst, or the reason it is a retry
	// ("connect", "transport", "timeout", "unavailable", "rate_limited",
	// "replay_detected", "timestamp_out_of_window", "request_in_progress",
	// "in_doubt").
	UpstreamAttempt(reason string)
	// ClockOffset reports the learned offset of the upstream's clock from
	// ours.
	ClockOffset(d time.Duration)
	// UpstreamAttemptDone reports one attempt's end: the API's status code
	// (0 when no answer came), a 401's reason (one of AuthReasons, "" for
	// other statuses) and the time from sending to response headers or
	// the error.
	UpstreamAttemptDone(status int, authReason string, d time.Duration)
	// SecretReread reports a re-read of a rotating secret after a 401
	// signature_mismatch: SecretChanged, SecretUnchanged or SecretError.
	SecretReread(result string)
}

// Defaults of Options. Package upstream owns them: the proxy's Options
// (package proxy) fill their zero values from these constants, so that each
// default is written once. They equal what config gives an unset
// KH_UPSTREAM_TIMEOUT, KH_RETRY_BUDGET and KH_UPSTREAM_IDLE_TIMEOUT (a test
// of the main package checks it).
const (
	// DefaultTimeout is Options.Timeout's default.
	DefaultTimeout = 30 * time.Second
	// DefaultRetryBudget is Options.RetryBudget's default.
	DefaultRetryBudget = 30 * time.Second
	// DefaultIdleTimeout is Options.IdleTimeout's default.
	DefaultIdleTimeout = 60 * time.Second
)

// Options configures a Transport. Signer is required; other zero values
// take the defaults documented on each field.
type Options struct {
	// Next sends each attempt; nil means NewHTTPTransport().
	Next http.RoundTripper
	// Signer signs every attempt.
	Signer *signer.Signer
	// Timeout bounds one attempt until response headers; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// RetryMax is how many times a failed attempt may be retried; 0 means
	// never, apart from the two one-off retries that only khproxy can fix
	// (replay_detected, and timestamp_out_of_window with a usable Date).
	RetryMax int
	// RetryBudget bounds the time from the first attempt to the start of
	// the last, backoff waits included; 0 means DefaultRetryBudget.
	RetryBudget time.Duration
	// IdleTimeout bounds how long a response body may send nothing; the
	// response is then cut with ErrBodyIdle. 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Limiter paces attempts to the API key's rate limit: each attempt but
	// a GET (or HEAD) /v1/health waits for a token, and an upstream 429
	// pauses it. nil means no pacing.
	Limiter *ratelimit.Limiter
	// Stop, once done, takes the requests still in line for their first
	// token out of it (StopError); nil means never.
	Stop context.Context
	// Logger receives retries and clock corrections; nil discards them.
	Logger *slog.Logger
	// Metrics receives attempts and the clock offset; nil measures
	// nothing.
	Metrics Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Transport signs each attempt with a fresh timestamp and nonce, retries
// what is safe to retry, and corrects for upstream clock skew. Create it
// with New; it is safe for concurrent use.
type Transport struct {
	next        http.RoundTripper
	signer      *signer.Signer
	now         func() time.Time
	timeout     time.Duration
	retryMax    int
	retryBudget time.Duration
	idleTimeout time.Duration
	limiter     *ratelimit.Limiter // nil: no pacing
	stop        context.Context    // done once khproxy is shutting down
	log         *slog.Logger
	metrics     Metrics

	// skew is the upstream clock minus ours, in seconds, learned from a
	// 401 timestamp_out_of_window; every signature adds it.
	skew atomic.Int64
	// rejectedGen is the last secret generation the API was seen to
	// reject (rotation.go), so that this is logged at WARN once per
	// generation rather than once per request.
	rejectedGen atomic.Uint64
}

// New builds a Transport from o. It fails only when o.Signer is nil.
func New(o Options) (*Transport, error) {
	if o.Signer == nil {
		return nil, errors.New("upstream: Signer is required")
	}
	t := &Transport{
		next:        o.Next,
		signer:      o.Signer,
		now:         o.Now,
		timeout:     o.Timeout,
		retryMax:    max(o.RetryMax, 0),
		retryBudget: o.RetryBudget,
		idleTimeout: o.IdleTimeout,
		limiter:     o.Limiter,
		stop:        o.Stop,
		log:         o.Logger,
		metrics:     o.Metrics,
	}
	if t.next == nil {
		t.next = NewHTTPTransport()
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.timeout <= 0 {
		t.timeout = DefaultTimeout
	}
	if t.retryBudget <= 0 {
		t.retryBudget = DefaultRetryBudget
	}
	if t.idleTimeout <= 0 {
		t.idleTimeout = DefaultIdleTimeout
	}
	if t.stop == nil {
		t.stop = context.Background()
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.metrics == nil {
		t.metrics = NoMetrics{}
	}
	return t, nil
}

// NoMetrics is the Metrics that measure nothing, used when Options.Metrics
// is nil; package proxy embeds it in its own. Its zero value is ready and
// safe for concurrent use.
type NoMetrics struct{}

// UpstreamAttempt does nothing.
func (NoMetrics) UpstreamAttempt(string) {}

// ClockOffset does nothing.
func (NoMetrics) ClockOffset(time.Duration) {}

// UpstreamAttemptDone does nothing.
func (NoMetrics) UpstreamAttemptDone(int, string, time.Duration) {}

// SecretReread does nothing.
func (NoMetrics) SecretReread(string) {}

// retryReason says why a finished attempt is retried; noRetry means it is
// not. The reasons are also the values of the "reason" log attribute.
type retryReason string

const (
	noRetry          retryReason = ""
	retryConnect     retryReason = "connect"                 // no connection: nothing was sent
	retryTransport   retryReason = "transport"               // broken after connecting
	retryTimeout     retryReason = "timeout"                 // no response headers in time
	retryUnavailable retryReason = "unavailable"             // 502, 503, 504
	retryRateLimited retryReason = "rate_limited"            // 429 with Retry-After
	retryReplay      retryReason = "replay_detected"         // 401: the API saw this signature before
	retryClockSkew   retryReason = "timestamp_out_of_window" // 401: our clock is off
	retryInProgress  retryReason = "request_in_progress"     // 409: the API still runs the request with this key
	retryInDoubt     retryReason = "in_doubt"                // another answer that settles nothing, for a keyed request
)

// RoundTrip sends req, whose Call is in its context (WithCall), retrying as
// the retry rules allow. A request without a Call fails.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := callFrom(req.Context())
	if c == nil {
		return nil, errors.New("upstream: request without a Call in its context")
	}
	// After the last attempt nothing reads the body again: its room in the
	// budget goes back once the transport has closed it.
	defer c.Body.Seal()
	start := t.now()
	skewRetried, replayRetried, rotationRetried := false, false, false
	if err := t.paceFirst(req, c); err != nil {
		return nil, err
	}
	reason := AttemptFirst
	// retry counts the retries RetryMax bounds; polls those that wait out
	// a request in progress, which it does not.
	retry, polls := 0, 0
	for {
		resp, connected, err := t.attempt(req, c, reason)
		c.Connected = c.Connected || connected
		t.observe(req, c, resp)
		why, wait := t.shouldRetry(req, c, resp, err, connected)
		if why == noRetry && !rotationRetried && t.secretRotated(req, c, resp) {
			why, rotationRetried = retrySecretRotated, true
		}
		asked := wait // what the upstream asked for (Retry-After)
		switch {
		case why == noRetry:
			return resp, err
		case why == retrySecretRotated:
			// Once, whatever RetryMax says, at once: the rejected
			// request had no effect and the new secret is at hand.
		case why == retryClockSkew:
			// Once, whatever RetryMax says: only we can fix it.
			if skewRetried || !t.learnSkew(resp, c) {
				return resp, err
			}
			skewRetried = true
		case why == retryInProgress:
			// Not a failure: the API asks us to wait for the request
			// with this key. Only the budget bounds the wait, even
			// with RetryMax 0: a key reused from another replica's
			// request meets it there. It looks again at least
			// every second or so: the answer may come any moment.
			wait = max(wait, backoff(min(polls, 3)))
		case retry < t.retryMax:
			wait = max(wait, backoff(retry))
		case why == retryReplay && !replayRetried:
			// Once, whatever RetryMax says: http.Transport resends
			// some requests on a reused connection with our signature,
			// and that must not reach the caller as a failure.
			replayRetried = true
		default:
			return resp, err
		}
		if t.now().Add(wait).Sub(start) > t.retryBudget {
			t.log.Debug("retry budget exhausted", "request_id", c.RequestID, "path", c.Target, "attempts", c.Attempts, "reason", why)
			return resp, err
		}
		if why == retryRateLimited && asked > 0 && t.paced(req, c) {
			wait = 0 // the 429 paused the limiter: waiting for a token waits it out
		}
		attrs := []any{"request_id", c.RequestID, "method", req.Method, "path", c.Target, "attempt", c.Attempts, "reason", why, "wait", wait, "idempotency_key", c.IdempotencyKey}
		if resp != nil {
			attrs = append(attrs, "upstream_status", resp.StatusCode)
		} else if err != nil {
			attrs = append(attrs, "error", err)
		}
		t.log.Info("retrying upstream request", attrs...)
		// The limiter runs on the real clock; t.now may be a test's.
		deadline := time.Now().Add(t.retryBudget - t.now().Sub(start))
		ok, cerr := t.waitToRetry(req, c, wait, deadline)
		switch {
		case cerr != nil:
			if resp != nil {
				discard(resp.Body)
			}
			return nil, cerr
		case !ok:
			return resp, err // no token in time: the last answer stands
		}
		if resp != nil {
			discard(resp.Body)
		}
		reason = string(why)
		if why == retryInProgress {
			polls++
		} else {
			retry++
		}
	}
}

// shouldRetry says why a finished attempt should be retried (noRetry when it
// should not) and the least wait the upstream asked for.
//
// A request the API rejected at authentication (401) had no effect, so it is
// safe to resend re-signed. Anything else may have reached the API: only
// requests that HTTP defines as idempotent, or that carry an Idempotency-Key
// the API deduplicates on, are resent; others only when the connection was
// never established. A request with an Idempotency-Key is resent on every
// answer that leaves it in doubt (InDoubt), so that its key ends settled.
func (t *Transport) shouldRetry(req *http.Request, c *Call, resp *http.Response, err error, connected bool) (retryReason, time.Duration) {
	if err != nil {
		var se *SignError
		switch {
		case req.Context().Err() != nil, errors.As(err, &se):
			return noRetry, 0 // the client went away, or khproxy failed itself
		case !connected:
			return retryConnect, 0
		case !safeToRepeat(req.Method, c.IdempotencyKey):
			return noRetry, 0
		case errors.Is(err, ErrAttemptTimeout):
			return retryTimeout, 0
		default:
			return retryTransport, 0
		}
	}
	keyed := c.IdempotencyKey != ""
	switch code := resp.StatusCode; code {
	case http.StatusUnauthorized:
		switch reason := retryReason(authReason(resp)); reason {
		case retryReplay, retryClockSkew:
			return reason, 0
		}
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if safeToRepeat(req.Method, c.IdempotencyKey) {
			return retryUnavailable, retryAfter(resp.Header, t.now())
		}
	case http.StatusTooManyRequests:
		d := retryAfter(resp.Header, t.now())
		if (d > 0 && safeToRepeat(req.Method, c.IdempotencyKey)) || keyed {
			return retryRateLimited, d
		}
	default:
		switch {
		case !keyed:
		case code == http.StatusConflict && (c.OwnKey || inProgress(resp)):
			return retryInProgress, retryAfter(resp.Header, t.now())
		case InDoubt(resp):
			return retryInDoubt, retryAfter(resp.Header, t.now())
		}
	}
	return noRetry, 0
}

// InDoubt reports whether resp, the API's answer to a request with an
// Idempotency-Key, leaves it unknown whether the request took effect or
// whether its key is settled: any status but 2xx and 4xx, and 408, 409
// request_in_progress, 425 and 429. Every other answer settles the key:
// the API has answered it for good (spec §2: it stores the answer and
// replays it for the key). A 409 body is read and put back.
func InDoubt(resp *http.Response) bool {
	switch code := resp.StatusCode; {
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
		return true
	case code == http.StatusConflict:
		return inProgress(resp)
	case code >= 200 && code < 300, code >= 400 && code < 500:
		return false
	}
	return true
}

// inProgress reports whether a 409 says that the request with this key is
// still being processed. The spec does not document this answer; the
// emulator (and APIs like it) say so with reason "request_in_progress",
// some APIs with a problem type of that name: both are recognised.
func inProgress(resp *http.Response) bool {
	p := readProblem(resp)
	return p.Reason == "request_in_progress" || strings.HasSuffix(p.Type, "request_in_progress")
}

// safeToRepeat reports whether sending the request twice has the effect of
// sending it once: its method is idempotent, or it carries an
// Idempotency-Key (idemKey) the API deduplicates on.
func safeToRepeat(method, idemKey string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return idemKey != ""
}

// attempt sends one signed copy of req. Its deadline covers the time until
// response headers; the body may then stream for as long as it takes.
// connected reports whether a connection to the upstream was obtained, after
// which the request's bytes may have reached it. reason is AttemptFirst or
// why this attempt is a retry, for the metrics.
func (t *Transport) attempt(req *http.Request, c *Call, reason string) (resp *http.Response, connected bool, err error) {
	c.Attempts++
	c.secretGen = t.secretGeneration()
	now := t.now().Add(time.Duration(t.skew.Load()) * time.Second)
	signed := c.Target
	if c.SignedPath != "" {
		signed = c.SignedPath
	}
	h, err := t.signer.Sign(req.Method, signed, c.BodyHash, now)
	if err != nil {
		return nil, false, &SignError{Err: err}
	}
	body, bodyDone := c.Body.AttemptReader()
	var gotConn atomic.Bool
	ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
		// Called once the request and all of its body were written, or
		// failed to be.
		WroteRequest: func(httptrace.WroteRequestInfo) { bodyDone() },
	})
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(t.timeout, func() { cancel(ErrAttemptTimeout) })

	// The first attempt may take req's headers (ReverseProxy's own copy);
	// a retry must not touch them, which the transport may still be
	// writing out for an attempt that failed.
	var out *http.Request
	if c.Attempts == 1 {
		out = req.WithContext(ctx)
	} else {
		out = req.Clone(ctx)
	}
	h.Apply(out.Header)
	// Set here, after hop-by-hop removal, so that a client's Connection
	// header cannot strip the key that the retry rules count on.
	if c.IdempotencyKey != "" {
		out.Header["Idempotency-Key"] = []string{c.IdempotencyKey}
	}
	out.Body = body
	// No GetBody: http.Transport must not resend this signature on its own.
	out.GetBody = nil
	out.ContentLength = c.Body.Len()
	out.TransferEncoding = nil

	t.metrics.UpstreamAttempt(reason)
	c.Sent.Store(true)
	sentAt := time.Now() // the real clock: t.now may be a test's
	resp, err = t.next.RoundTrip(out)
	t.measure(c, resp, time.Since(sentAt))
	if !timer.Stop() && err != nil && errors.Is(context.Cause(ctx), ErrAttemptTimeout) && !errors.Is(err, ErrAttemptTimeout) {
		// Some failures do not carry the cause: add it once.
		err = errors.Join(ErrAttemptTimeout, err)
	}
	if err != nil {
		cancel(nil)
		if !gotConn.Load() {
			bodyDone() // never written: no connection to write it to
		}
		return nil, gotConn.Load(), err
	}
	resp.Body = t.watch(ctx, cancel, resp.Body, c)
	return resp, true, nil
}

// learnSkew sets the clock correction from the upstream's Date header and
// reports whether it found one.
func (t *Transport) learnSkew(resp *http.Response, c *Call) bool {
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		t.log.Warn("upstream says our timestamp is out of its window but sent no usable Date header; check this machine's clock (NTP)", "request_id", c.RequestID)
		return false
	}
	// Date is truncated to the second: the upstream's clock read between
	// Date and Date+1s, so the middle is the best guess. Reading Date as
	// it is would make clocks that agree look 1 s apart half the time.
	skew := date.Add(500 * time.Millisecond).Sub(t.now()).Round(time.Second)
	t.skew.Store(int64(skew / time.Second))
	t.metrics.ClockOffset(skew)
	if skew == 0 {
		t.log.Warn("upstream says our timestamp is out of its window, but its clock agrees with ours again: signing without a correction from now on", "request_id", c.RequestID, "offset", skew)
		return true
	}
	t.log.Warn("upstream clock differs from ours: signing with a corrected clock from now on; fix this machine's clock (NTP)", "request_id", c.RequestID, "offset", skew)
	return true
}

// authReason reads the reason of a 401 problem body and puts the bytes back
// so that the response can still be passed through untouched.
func authReason(resp *http.Response) string { return readProblem(resp).Reason }

// problemFields are the problem body fields the retry rules read.
type problemFields struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// readProblem reads the type and reason of a problem body and puts the bytes
// back so that the response can still be passed through untouched. Reading
// twice is harmless.
func readProblem(resp *http.Response) problemFields {
	const limit = 64 << 10
	var p problemFields
	if resp.Body == nil || resp.Body == http.NoBody {
		return p
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	rest := resp.Body
	resp.Body = &multiReadCloser{Reader: io.MultiReader(bytes.NewReader(b), rest), Closer: rest}
	if err != nil {
		return p
	}
	_ = json.Unmarshal(b, &p)
	return p
}

type multiReadCloser struct {
	io.Reader
	io.Closer
}

// retryAfter parses Retry-After (seconds or an HTTP date); 0 when absent or
// unusable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}

// backoff is the wait before retry n (0-based): exponential with jitter, so
// that many proxies do not retry in step.
func backoff(n int) time.Duration {
	d := min(backoffBase<<min(n, 16), backoffMax)
	return d/2 + rand.N(d/2+1)
}

// discard drains a little of a body so the connection can be reused, then
// closes it.
func discard(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	_ = body.Close()
}
