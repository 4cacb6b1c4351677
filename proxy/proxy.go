// Package proxy is khproxy's signing reverse proxy: an http.Handler that
// buffers each request body, signs the request for the KernelHost Reseller
// API (via package signer), adds an Idempotency-Key where configured, and
// forwards it with httputil.ReverseProxy.
//
// Signing happens in the RoundTripper, after ReverseProxy has removed
// hop-by-hop headers (including those a client's Connection header names), so
// nothing a client sends can strip or duplicate the KH-* headers.
//
// The package knows nothing of environment variables: its caller maps its
// settings onto Options.
package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"khproxy/problem"
	"khproxy/signer"
)

// Options configures a Proxy. Upstream and Signer are required; other zero
// values take the defaults documented on each field.
type Options struct {
	// Upstream is the API base URL, e.g. https://host/cp/kh_reseller_api: an
	// absolute http(s) URL without query. Its path is prepended to each
	// request path and is not signed (spec §1.2).
	Upstream *url.URL
	// Signer signs every upstream attempt.
	Signer *signer.Signer
	// MaxBodyBytes bounds the request body; 0 means 10 MiB.
	MaxBodyBytes int64
	// UpstreamTimeout bounds one attempt until response headers; 0 means 30s.
	UpstreamTimeout time.Duration
	// IdempotentRoutes get an automatic Idempotency-Key when the client sends
	// none.
	IdempotentRoutes []Route
	// Transport performs upstream attempts; nil means NewTransport(), trusting
	// UpstreamCAs.
	Transport http.RoundTripper
	// UpstreamCAs are trusted for an https upstream in addition to the
	// system's roots; nil means the system's roots only. Set it or
	// Transport, not both.
	UpstreamCAs []*x509.Certificate
	// RetryMax is how many times a failed attempt may be retried; 0 means
	// never, apart from the two one-off retries that only khproxy can fix
	// (see signingTransport.shouldRetry for which failures are retried).
	RetryMax int
	// RetryBudget bounds the time from the first attempt to the start of the
	// last, backoff waits included; 0 means 30s.
	RetryBudget time.Duration
	// IdempotencyWindow is how long the automatic key of a request whose
	// answer did not reach its caller is kept for the caller's retry; 0
	// means 10 minutes.
	IdempotencyWindow time.Duration
	// Logger receives the access log and errors; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// withDefaults returns o with every zero value replaced by its default.
func (o Options) withDefaults() Options {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 10 << 20
	}
	if o.UpstreamTimeout <= 0 {
		o.UpstreamTimeout = 30 * time.Second
	}
	if o.Transport == nil {
		t := NewTransport()
		t.TLSClientConfig.RootCAs = rootsWith(o.UpstreamCAs)
		o.Transport = t
	}
	o.RetryMax = max(o.RetryMax, 0)
	if o.RetryBudget <= 0 {
		o.RetryBudget = 30 * time.Second
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Proxy is the signing reverse proxy. Create it with New; it is safe for
// concurrent use.
type Proxy struct {
	rp       *httputil.ReverseProxy
	upstream *url.URL
	basePath string // upstream's escaped path without trailing slash

	basePathUnescaped string
	maxBody           int64
	routes            routeSet
	flights           *flights
	log               *slog.Logger
	// abandonAfter bounds how long a leader goes on once its caller left.
	abandonAfter time.Duration
	now          func() time.Time
}

// New builds a Proxy from opts. It fails only when a required option is
// missing or two options conflict.
func New(opts Options) (*Proxy, error) {
	if opts.Upstream == nil || opts.Signer == nil {
		return nil, errors.New("proxy: Upstream and Signer are required")
	}
	if opts.Transport != nil && opts.UpstreamCAs != nil {
		return nil, errors.New("proxy: set UpstreamCAs or Transport, not both")
	}
	opts = opts.withDefaults()
	p := &Proxy{
		upstream:          opts.Upstream,
		basePath:          strings.TrimSuffix(opts.Upstream.EscapedPath(), "/"),
		basePathUnescaped: strings.TrimSuffix(opts.Upstream.Path, "/"),
		maxBody:           opts.MaxBodyBytes,
		routes:            newRouteSet(opts.IdempotentRoutes),
		flights:           newFlights(opts.IdempotencyWindow),
		log:               opts.Logger,
		abandonAfter:      opts.RetryBudget + opts.UpstreamTimeout,
		now:               opts.Now,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: p.rewrite,
		Transport: &signingTransport{
			next:        opts.Transport,
			signer:      opts.Signer,
			now:         p.now,
			timeout:     opts.UpstreamTimeout,
			retryMax:    opts.RetryMax,
			retryBudget: opts.RetryBudget,
			log:         p.log,
		},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		BufferPool:     bufferPool{},
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// exchange is what one client request carries through ReverseProxy to the
// RoundTripper and back to the access log. It lives in the request context.
type exchange struct {
	url      *url.URL // upstream URL, built once from the client's target
	target   string   // signed PATH: the upstream request-target after the base
	body     []byte
	bodyHash string
	idemKey  string // Idempotency-Key sent upstream, "" when none
	autoKey  bool   // idemKey was generated by khproxy

	// Set by the RoundTripper and ModifyResponse; read after ServeHTTP of
	// ReverseProxy returns, so no locking is needed.
	attempts       int
	upstreamStatus int
	requestID      string // upstream X-Request-Id
	shared         bool   // answered with an identical in-flight request's answer
	err            *Error
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// ServeHTTP signs and forwards r, or answers a problem when it cannot.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := p.now()
	rec := &recorder{ResponseWriter: w}
	ex, err := p.prepare(rec, r)
	var f *flight
	defer func() {
		// ReverseProxy panics with http.ErrAbortHandler when the response
		// could not be copied whole; the bookkeeping must happen anyway.
		v := recover()
		if f != nil {
			if v == nil {
				_ = rec.finish(r.Context())
			}
			p.endFlight(f, ex, rec, v != nil)
		}
		p.accessLog(r, ex, rec.status, p.now().Sub(start))
		if v != nil {
			panic(v)
		}
	}()
	if err != nil {
		p.fail(rec, r, ex, err)
		return
	}
	ctx := context.WithValue(r.Context(), exchangeKey{}, ex)
	if ex.autoKey {
		fl, leader := p.joinFlight(ctx, rec, r, ex)
		if !leader {
			if fl != nil && rec.finish(r.Context()) && fl.result.status < 500 {
				// The answer reached a caller after all: the next
				// identical request is a new one.
				p.flights.forget(fl)
			}
			return
		}
		f = fl
		// The caller may give up; the request goes on so that its answer
		// can be given to the caller's retry, for at most abandonAfter
		// once the caller has left.
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		stop := context.AfterFunc(ctx, func() { time.AfterFunc(p.abandonAfter, cancel) })
		defer stop()
		ctx = lctx
		rec.capture = &bytes.Buffer{}
	}
	p.rp.ServeHTTP(rec, r.WithContext(ctx))
}

// prepare refuses what it must, reads the body and picks the
// Idempotency-Key. The returned exchange is never nil.
func (p *Proxy) prepare(w *recorder, r *http.Request) (*exchange, error) {
	ex := &exchange{}
	if r.Method == http.MethodConnect {
		return ex, &Error{Kind: KindMethodNotAllowed, Detail: "CONNECT is not supported: send plain HTTP requests to khproxy"}
	}
	if err := p.resolveTarget(ex, r.RequestURI); err != nil {
		return ex, err
	}
	if err := p.readBody(w, r, ex); err != nil {
		return ex, err
	}
	return ex, p.pickKey(r, ex)
}

// pickKey keeps the client's Idempotency-Key, or makes one for a request on
// an idempotent route.
func (p *Proxy) pickKey(r *http.Request, ex *exchange) error {
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		ex.idemKey = key
		return nil
	}
	path, _, _ := strings.Cut(ex.target, "?")
	if !p.routes.match(r.Method, path) {
		return nil
	}
	key, err := newIdempotencyKey()
	if err != nil {
		return &Error{Kind: KindSigning, Detail: "could not generate an Idempotency-Key", Err: err}
	}
	ex.idemKey, ex.autoKey = key, true
	r.Header.Set("Idempotency-Key", key)
	return nil
}

func newIdempotencyKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// errorHandler answers transport failures.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	p.fail(w, r, exchangeFrom(r.Context()), err)
}

// fail answers err as problem+json and records it for the access log.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, ex *exchange, err error) {
	e, body := problemFor(err)
	if ex != nil {
		ex.err = e
		if ex.idemKey != "" {
			w.Header().Set("Idempotency-Key", ex.idemKey)
			if ex.attempts > 0 {
				body.Detail += fmt.Sprintf(" (attempts: %d; retry with Idempotency-Key %s to avoid a duplicate)", ex.attempts, ex.idemKey)
			}
		}
	}
	if e.Kind == KindClientGone {
		// Nobody is listening; record the status for the log only.
		if rec, ok := w.(*recorder); ok {
			rec.status = e.Kind.Status()
		}
		return
	}
	problem.Write(w, body)
}
