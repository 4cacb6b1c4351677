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
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"time"

	"khproxy/apiroute"
	"khproxy/browserguard"
	"khproxy/problem"
	"khproxy/proxy/flight"
	"khproxy/proxy/heldbody"
	"khproxy/proxy/reqtarget"
	"khproxy/proxy/upstream"
	"khproxy/ratelimit"
	"khproxy/signer"
)

// flushDelay bounds how long bytes of an answer of known length wait
// before they are sent on to the client.
const flushDelay = 10 * time.Millisecond

// Defaults of the proxy's own Options; the upstream attempt loop's are
// package upstream's Default* constants. They equal what config gives an
// unset variable (a test of the main package checks it), so that a caller
// of this package and khproxy's user get the same proxy.
const (
	// DefaultMaxBodyBytes is Options.MaxBodyBytes's default, 1 MiB.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultIdempotencyWindow is Options.IdempotencyWindow's default.
	DefaultIdempotencyWindow = 10 * time.Minute
	// DefaultMaxInflightBytes is Options.MaxInflightBytes's default, 2 MiB.
	DefaultMaxInflightBytes = 2 << 20
	// DefaultBudgetWait is Options.BudgetWait's default.
	DefaultBudgetWait = 5 * time.Second
)

// Options configures a Proxy. Upstream and Signer are required; other zero
// values take the defaults documented on each field, applied once, by New.
// The defaults of the upstream attempt loop's settings (UpstreamTimeout,
// RetryBudget, UpstreamIdleTimeout) are package upstream's Default*
// constants; the others are the proxy's own. Package upstream is handed
// complete values.
type Options struct {
	// Upstream is the API base URL, e.g. https://host/cp/kh_reseller_api: an
	// absolute http(s) URL without query. Its path is prepended to each
	// request path and is not signed (spec §1.2). A request path that
	// already starts with it (the API's documented URL form) is taken
	// relative to it, and Location headers pointing under it are given back
	// relative to khproxy.
	Upstream *url.URL
	// Signer signs every upstream attempt.
	Signer *signer.Signer
	// SignFullPath signs the upstream request's whole path, Upstream's path
	// followed by /v1/... (KH_SIGNED_PATH=full), instead of the path from
	// /v1 on as every example of the API's docs does (false, the default).
	// Spec §9.1 leaves open which one the API verifies.
	SignFullPath bool
	// MaxBodyBytes bounds the request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// UpstreamTimeout bounds one attempt until response headers; 0 means
	// upstream.DefaultTimeout.
	UpstreamTimeout time.Duration
	// IdempotentRoutes get an automatic Idempotency-Key when the client sends
	// none; a request is matched by package apiroute's one rule, on the
	// path as it is signed. nil means none.
	IdempotentRoutes []apiroute.Pattern
	// Transport performs upstream attempts; nil means NewTransport(), trusting
	// UpstreamCAs.
	Transport http.RoundTripper
	// UpstreamCAs are trusted for an https upstream in addition to the
	// system's roots; nil means the system's roots only. Set it or
	// Transport, not both.
	UpstreamCAs []*x509.Certificate
	// RetryMax is how many times a failed attempt may be retried; 0 means
	// never, apart from the two one-off retries that only khproxy can fix
	// (package upstream says which failures are retried).
	RetryMax int
	// RetryBudget bounds the time from the first attempt to the start of the
	// last, backoff waits included; 0 means upstream.DefaultRetryBudget.
	RetryBudget time.Duration
	// IdempotencyWindow is how long the automatic key of a request whose
	// answer did not reach its caller is kept for the caller's retry; 0
	// means DefaultIdempotencyWindow. It sizes the default RetryMemory
	// only.
	IdempotencyWindow time.Duration
	// MaxInflightBytes is the memory budget for the request bodies held at
	// once; 0 means DefaultMaxInflightBytes. A body larger than it gets
	// 413 at once.
	MaxInflightBytes int64
	// BudgetWait bounds how long a request waits for room in the budget
	// before it gets 503; 0 means DefaultBudgetWait.
	BudgetWait time.Duration
	// UpstreamIdleTimeout bounds how long an upstream response body may send
	// nothing; the response is then cut. 0 means
	// upstream.DefaultIdleTimeout.
	UpstreamIdleTimeout time.Duration
	// RetryMemory keeps those keys; nil means an in-process memory. A
	// memory shared by several replicas (ratelimit.RetryMemory with a
	// Redis store) lets a retry reuse the key on any of them.
	RetryMemory RetryMemory
	// Flights shares the automatic-key requests in flight with other
	// replicas (ratelimit.FlightBoard on Redis), so that a caller's retry
	// at any replica finds its abandoned request; nil means this replica
	// alone.
	Flights FlightBoard
	// Limiter paces upstream attempts to the API key's rate limit: each
	// attempt but an unsigned-route GET /v1/health waits for a token, and
	// an API 429 pauses it. nil means no pacing.
	Limiter *ratelimit.Limiter
	// Callers judges each request before anything of it is read, refusing
	// what a web browser sent for a page and Host names khproxy does not
	// answer to (package browserguard says what and why); refused
	// requests get 403 browser_refused or 421 host_refused, are logged
	// and counted, and nothing is sent. nil checks nothing: run.go always
	// sets one.
	Callers *browserguard.Guard
	// Logger receives the access log and errors; nil discards them.
	Logger *slog.Logger
	// Metrics receives measurements of requests and upstream attempts;
	// nil measures nothing.
	Metrics Metrics
	// Gates judge each request before it is sent and hear how it was
	// answered (see Gate); nil means none.
	Gates []Gate
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// withDefaults returns o with every zero value replaced by its default.
func (o Options) withDefaults() Options {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.UpstreamTimeout <= 0 {
		o.UpstreamTimeout = upstream.DefaultTimeout
	}
	if o.Transport == nil {
		t := NewTransport()
		t.TLSClientConfig.RootCAs = upstream.RootsWith(o.UpstreamCAs)
		o.Transport = t
	}
	o.RetryMax = max(o.RetryMax, 0)
	if o.RetryBudget <= 0 {
		o.RetryBudget = upstream.DefaultRetryBudget
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if o.MaxInflightBytes <= 0 {
		o.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if o.BudgetWait <= 0 {
		o.BudgetWait = DefaultBudgetWait
	}
	if o.UpstreamIdleTimeout <= 0 {
		o.UpstreamIdleTimeout = upstream.DefaultIdleTimeout
	}
	if o.RetryMemory == nil {
		o.RetryMemory = ratelimit.NewRetryMemory(o.IdempotencyWindow, nil, nil)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Proxy is the signing reverse proxy. Create it with New; it is safe for
// concurrent use.
type Proxy struct {
	rp         *httputil.ReverseProxy
	base       reqtarget.Base // the upstream URL request-targets resolve against
	signFull   bool           // Options.SignFullPath
	maxBody    int64
	budget     *heldbody.Budget
	budgetWait time.Duration
	routes     []apiroute.Pattern
	callers    *browserguard.Guard
	flights    *flight.Registry
	inflight   inflightSet
	receivers  receivingSet
	// stop is cancelled by StopReceiving: requests still in line for a
	// rate-limit token leave it.
	stop       context.Context
	stopCancel context.CancelFunc
	log        *slog.Logger
	metrics    Metrics
	gates      []Gate
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
	stop, stopCancel := context.WithCancel(context.Background())
	p := &Proxy{
		stop:         stop,
		stopCancel:   stopCancel,
		base:         reqtarget.NewBase(opts.Upstream),
		signFull:     opts.SignFullPath,
		maxBody:      opts.MaxBodyBytes,
		budget:       heldbody.NewBudget(opts.MaxInflightBytes),
		budgetWait:   opts.BudgetWait,
		routes:       slices.Clone(opts.IdempotentRoutes),
		callers:      opts.Callers,
		flights:      flight.NewRegistry(opts.RetryMemory, flight.DefaultGrace),
		log:          opts.Logger,
		metrics:      opts.Metrics,
		gates:        opts.Gates,
		abandonAfter: opts.RetryBudget + opts.UpstreamTimeout,
		now:          opts.Now,
	}
	if opts.Flights != nil {
		p.flights.Share(opts.Flights)
	}
	up, err := newUpstream(opts, p.stop)
	if err != nil {
		stopCancel()
		return nil, err
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: up,
		// Headers as soon as the API sends them, bytes as they come: an
		// answer of unknown length (or an event stream) is flushed after
		// every write (ReverseProxy's own rule); one of known length
		// within flushDelay, or at its end when it comes whole before
		// that, which most API answers do: one write instead of one for
		// the headers and one for the body.
		FlushInterval:  flushDelay,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		BufferPool:     upstream.BufferPool{},
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// exchange is what one client request carries through ReverseProxy to the
// RoundTripper and back to the access log. It lives in the request context.
type exchange struct {
	id       string         // khproxy's request id (Khproxy-Request-Id)
	url      *url.URL       // upstream URL, built once from the client's target
	target   string         // the upstream request-target after the base: /v1/orders?x
	signed   string         // with SignFullPath, the signed whole upstream request-target; else "" (target is signed)
	body     *heldbody.Body // nil until the body is read
	bodyHash string
	idemKey  string // Idempotency-Key sent upstream, "" when none
	autoKey  bool   // idemKey was generated by khproxy for this request's flight
	// refusedUnread: refused before the body was read; drain it after.
	refusedUnread bool
	// keySource says where idemKey came from: KeyAuto, KeyClient or
	// KeyReused; "" when there is none.
	keySource string

	// Set by ModifyResponse and the handler; read after ServeHTTP of
	// ReverseProxy returns, so no locking is needed.
	upstreamStatus int
	apiRequestID   string // upstream X-Request-Id
	shared         bool   // answered with an identical in-flight request's answer
	err            *Error

	// For Options.Gates: the request as they see it, and the start of
	// the API's answer to a write call (answerComplete: all of it).
	call           *Call
	answer         []byte
	answerComplete bool

	// up is what the upstream transport is told of the request (withCall)
	// and reports of its attempts: their number, whether one was sent,
	// the rate-limit wait, why reading the response body failed.
	up upstream.Call
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// ServeHTTP signs and forwards r, or answers a problem when it cannot.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := p.now()
	p.metrics.RequestStarted()
	rec := &recorder{ResponseWriter: w, closeConn: framingUnclear(r)}
	id := newRequestID()
	rec.setRequestID(id)
	ex, err := p.prepare(rec, r)
	ex.id = id
	p.recordOnSend(rec, r, ex)
	var f *flight.Flight
	defer func() {
		// ReverseProxy panics with http.ErrAbortHandler when the response
		// could not be copied whole; the bookkeeping must happen anyway.
		v := recover()
		ex.dropBody()
		aborted := v != nil
		if aborted {
			v = p.aborted(rec, r, ex, v)
		}
		if !aborted {
			// A response without body bytes has not gone out yet.
			rec.sendHeader()
		}
		if f != nil {
			if !aborted {
				_ = rec.finish(r.Context())
			}
			p.endFlight(f, ex, rec, aborted)
		}
		if !aborted {
			rec.flushComplete()
		}
		d, route := p.now().Sub(start), routeOf(ex)
		status := rec.status
		if rec.err != nil {
			// The caller left before the whole answer reached it.
			status = KindClientGone.Status()
		}
		p.accessLog(r, ex, route, status, d)
		p.observe(r, ex, route, status, d)
		if v != nil {
			panic(v)
		}
	}()
	if err != nil {
		p.fail(rec, r, ex, err)
		p.drainRefused(rec, r, ex)
		return
	}
	ctx := context.WithValue(r.Context(), exchangeKey{}, ex)
	if ex.autoKey {
		fl, leader := p.joinFlight(ctx, rec, r, ex)
		if !leader {
			return
		}
		f = fl
		// The caller may give up; the request goes on so that its answer
		// can be given to the caller's retry, for at most abandonAfter
		// once the caller has left.
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		stop := context.AfterFunc(ctx, func() {
			p.flights.Leave(f)
			time.AfterFunc(p.abandonAfter, cancel)
		})
		defer stop()
		ctx = lctx
		rec.capture = &bytes.Buffer{}
	}
	defer p.track(r.Method, ex)()
	if !p.admit(ctx, rec, r, ex) {
		return
	}
	p.rp.ServeHTTP(rec, r.WithContext(ex.withCall(ctx)))
}

// prepare refuses what it must, reads the body and picks the
// Idempotency-Key. The returned exchange is never nil.
func (p *Proxy) prepare(w *recorder, r *http.Request) (*exchange, error) {
	ex := &exchange{}
	if r.Method == http.MethodConnect {
		return ex, connectRefusal(r)
	}
	// The target first, for the access log's path; a refused browser
	// request is refused as such whatever its target.
	targetErr := p.resolveTarget(ex, r.RequestURI)
	if err := p.checkCaller(r); err != nil {
		return ex, err
	}
	if targetErr != nil {
		return ex, targetErr
	}
	if err := checkRoute(r.Method, ex.target); err != nil {
		return ex, err
	}
	if err := checkClientKey(r.Header); err != nil {
		return ex, err
	}
	if err := p.readBody(w, r, ex); err != nil {
		return ex, err
	}
	return ex, p.pickKey(r, ex)
}

// checkCaller asks the Guard, when there is one, whether r's caller may be
// served at all.
func (p *Proxy) checkCaller(r *http.Request) error {
	if p.callers == nil {
		return nil
	}
	err := p.callers.Check(r)
	var refusal *browserguard.Refusal
	if !errors.As(err, &refusal) {
		return err
	}
	if refusal.Reason == browserguard.ForeignHost {
		return &Error{Kind: KindHostRefused, Detail: refusal.Detail + "; callers on other hosts must be allowed in khproxy's configuration"}
	}
	return &Error{Kind: KindBrowserRefused, Detail: refusal.Detail + "; khproxy signs requests with a key that spends money and serves only apps, not web pages"}
}

// errorHandler answers transport failures.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	p.fail(w, r, exchangeFrom(r.Context()), err)
}

// fail answers err as problem+json and records it for the access log.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, ex *exchange, err error) {
	e := classify(err)
	if ex != nil && ex.autoKey && ex.up.Connected && (e.Kind == KindTimeout || e.Kind == KindUnreachable) {
		e = inDoubt(ex, e)
	}
	e, body := problemFor(e)
	if ex != nil {
		ex.err = e
		body.RequestID = ex.id
		if ex.idemKey != "" {
			w.Header().Set("Idempotency-Key", ex.idemKey)
			if ex.up.Attempts > 0 && e.Kind != KindInDoubt {
				body.Detail += fmt.Sprintf(" (attempts: %d; retry with Idempotency-Key %s to avoid a duplicate)", ex.up.Attempts, ex.idemKey)
			}
		}
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	if e.Kind == KindRequestTimeout {
		w.Header().Set("Connection", "close")
	}
	if e.Kind == KindClientGone {
		// Nobody is listening; record the status for the log only.
		if rec, ok := w.(*recorder); ok {
			rec.status = e.Kind.Status()
		}
		return
	}
	if r != nil && r.Method == http.MethodConnect && p.writeConnectRefusal(w, r, body) {
		return
	}
	problem.Write(w, body)
}
