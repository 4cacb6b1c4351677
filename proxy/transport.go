package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"khproxy/ratelimit"
	"khproxy/signer"
)

// NewTransport returns the upstream transport khproxy uses by default: a
// connection pool as large as the concurrency, TLS verification on, HTTP/2 when
// the upstream offers it, HTTPS_PROXY/HTTP_PROXY/NO_PROXY honoured, and no
// transparent gzip (the upstream sees the client's own Accept-Encoding and the
// client gets the bytes the upstream sent).
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: dialUpstream((&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext),
		TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
		// khproxy talks to one host. An idle pool smaller than the
		// concurrency closes a connection after nearly every request and
		// opens a new one for the next (thousands of sockets in TIME_WAIT
		// at 200 callers); the pool only ever holds as many connections as
		// the peak concurrency opened, and for IdleConnTimeout at most.
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// rootsWith returns the system's roots plus cas, or nil (the system's roots,
// as crypto/tls reads them) when cas is empty.
func rootsWith(cas []*x509.Certificate) *x509.CertPool {
	if len(cas) == 0 {
		return nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		// No system roots here (a scratch image): trust cas alone.
		roots = x509.NewCertPool()
	}
	for _, c := range cas {
		roots.AddCert(c)
	}
	return roots
}

// errAttemptTimeout marks an attempt that got no response headers within the
// upstream timeout.
var errAttemptTimeout = errors.New("no response headers within the upstream timeout")

// Backoff bounds between attempts; Retry-After can ask for longer.
const (
	backoffBase = 100 * time.Millisecond
	backoffMax  = 5 * time.Second
)

// signingTransport signs each attempt with a fresh timestamp and nonce,
// retries what is safe to retry, and corrects for upstream clock skew.
type signingTransport struct {
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
}

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
)

// RoundTrip sends req, which ReverseProxy built from a client request whose
// exchange is in the context, retrying as the retry rules allow.
func (t *signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchangeFrom(req.Context())
	if ex == nil {
		return nil, errors.New("proxy: request without exchange")
	}
	// After the last attempt nothing reads the body again: its room in the
	// budget goes back once the transport has closed it.
	defer ex.body.Seal()
	start := t.now()
	skewRetried, replayRetried := false, false
	if err := t.paceFirst(req, ex); err != nil {
		return nil, err
	}
	reason := AttemptFirst
	for retry := 0; ; retry++ {
		resp, connected, err := t.attempt(req, ex, reason)
		t.observe(req, ex, resp)
		why, wait := t.shouldRetry(req, ex, resp, err, connected)
		switch {
		case why == noRetry:
			return resp, err
		case why == retryClockSkew:
			// Once, whatever RetryMax says: only we can fix it.
			if skewRetried || !t.learnSkew(resp) {
				return resp, err
			}
			skewRetried = true
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
			t.log.Debug("retry budget exhausted", "path", ex.target, "attempts", ex.attempts, "reason", why)
			return resp, err
		}
		if why == retryRateLimited && t.paced(req, ex) {
			wait = 0 // the 429 paused the limiter: waiting for a token waits it out
		}
		attrs := []any{"method", req.Method, "path", ex.target, "attempt", ex.attempts, "reason", why, "wait", wait, "idempotency_key", ex.idemKey}
		if resp != nil {
			attrs = append(attrs, "upstream_status", resp.StatusCode)
		} else if err != nil {
			attrs = append(attrs, "error", err)
		}
		t.log.Info("retrying upstream request", attrs...)
		// The limiter runs on the real clock; t.now may be a test's.
		deadline := time.Now().Add(t.retryBudget - t.now().Sub(start))
		ok, cerr := t.waitToRetry(req, ex, wait, deadline)
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
	}
}

// shouldRetry says why a finished attempt should be retried (noRetry when it
// should not) and the least wait the upstream asked for.
//
// A request the API rejected at authentication (401) had no effect, so it is
// safe to resend re-signed. Anything else may have reached the API: only
// requests that HTTP defines as idempotent, or that carry an Idempotency-Key
// the API deduplicates on, are resent; others only when the connection was
// never established.
func (t *signingTransport) shouldRetry(req *http.Request, ex *exchange, resp *http.Response, err error, connected bool) (retryReason, time.Duration) {
	if err != nil {
		var e *Error
		switch {
		case req.Context().Err() != nil, errors.As(err, &e):
			return noRetry, 0 // the client went away, or khproxy failed itself
		case !connected:
			return retryConnect, 0
		case !safeToRepeat(req.Method, ex):
			return noRetry, 0
		case errors.Is(err, errAttemptTimeout):
			return retryTimeout, 0
		default:
			return retryTransport, 0
		}
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		switch reason := retryReason(authReason(resp)); reason {
		case retryReplay, retryClockSkew:
			return reason, 0
		}
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if safeToRepeat(req.Method, ex) {
			return retryUnavailable, retryAfter(resp.Header, t.now())
		}
	case http.StatusTooManyRequests:
		if d := retryAfter(resp.Header, t.now()); d > 0 && safeToRepeat(req.Method, ex) {
			return retryRateLimited, d
		}
	}
	return noRetry, 0
}

// safeToRepeat reports whether sending the request twice has the effect of
// sending it once.
func safeToRepeat(method string, ex *exchange) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return ex.idemKey != ""
}

// attempt sends one signed copy of req. Its deadline covers the time until
// response headers; the body may then stream for as long as it takes.
// connected reports whether a connection to the upstream was obtained, after
// which the request's bytes may have reached it. reason is AttemptFirst or
// why this attempt is a retry, for the metrics.
func (t *signingTransport) attempt(req *http.Request, ex *exchange, reason string) (resp *http.Response, connected bool, err error) {
	ex.attempts++
	now := t.now().Add(time.Duration(t.skew.Load()) * time.Second)
	h, err := t.signer.Sign(req.Method, ex.target, ex.bodyHash, now)
	if err != nil {
		return nil, false, &Error{Kind: KindSigning, Detail: "khproxy could not sign the request; see its log", Err: err}
	}
	body, bodyDone := ex.body.AttemptReader()
	var gotConn atomic.Bool
	ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
		// Called once the request and all of its body were written, or
		// failed to be.
		WroteRequest: func(httptrace.WroteRequestInfo) { bodyDone() },
	})
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(t.timeout, func() { cancel(errAttemptTimeout) })

	// The first attempt may take req's headers (ReverseProxy's own copy);
	// a retry must not touch them, which the transport may still be
	// writing out for an attempt that failed.
	var out *http.Request
	if ex.attempts == 1 {
		out = req.WithContext(ctx)
	} else {
		out = req.Clone(ctx)
	}
	h.Apply(out.Header)
	// Set here, after hop-by-hop removal, so that a client's Connection
	// header cannot strip the key that the retry rules count on.
	if ex.idemKey != "" {
		out.Header["Idempotency-Key"] = []string{ex.idemKey}
	}
	out.Body = body
	// No GetBody: http.Transport must not resend this signature on its own.
	out.GetBody = nil
	out.ContentLength = ex.body.Len()
	out.TransferEncoding = nil

	t.metrics.UpstreamAttempt(reason)
	ex.sent.Store(true)
	resp, err = t.next.RoundTrip(out)
	if !timer.Stop() && err != nil && errors.Is(context.Cause(ctx), errAttemptTimeout) {
		err = errors.Join(errAttemptTimeout, err)
	}
	if err != nil {
		cancel(nil)
		if !gotConn.Load() {
			bodyDone() // never written: no connection to write it to
		}
		return nil, gotConn.Load(), err
	}
	resp.Body = t.watch(ctx, cancel, resp.Body, ex)
	return resp, true, nil
}

// learnSkew sets the clock correction from the upstream's Date header and
// reports whether it found one.
func (t *signingTransport) learnSkew(resp *http.Response) bool {
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		t.log.Warn("upstream says our timestamp is out of its window but sent no usable Date header; check this machine's clock (NTP)")
		return false
	}
	skew := date.Sub(t.now()).Round(time.Second)
	t.skew.Store(int64(skew / time.Second))
	t.metrics.ClockOffset(skew)
	t.log.Warn("upstream clock differs from ours: signing with a corrected clock from now on; fix this machine's clock (NTP)", "offset", skew.String())
	return true
}

// authReason reads the reason of a 401 problem body and puts the bytes back
// so that the response can still be passed through untouched.
func authReason(resp *http.Response) string {
	const limit = 64 << 10
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	rest := resp.Body
	resp.Body = &multiReadCloser{Reader: io.MultiReader(bytes.NewReader(b), rest), Closer: rest}
	if err != nil {
		return ""
	}
	var p struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(b, &p) != nil {
		return ""
	}
	return p.Reason
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
