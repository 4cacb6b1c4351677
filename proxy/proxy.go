// Package proxy is khproxy's signing reverse proxy: an http.Handler that
// buffers each request body, signs the request for the KernelHost Reseller
// API (via package signer), adds an Idempotency-Key where configured, and
// forwards it with httputil.ReverseProxy.
//
// Signing happens in the RoundTripper, after ReverseProxy has removed
// hop-by-hop headers (including those a client's Connection header names), so
// nothing a client sends can strip or duplicate the KH-* headers.
package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"khproxy/problem"
	"khproxy/signer"
)

// Options configures a Proxy. Upstream and Signer are required; other zero
// values take the defaults documented on each field.
type Options struct {
	// Upstream is the API base URL, e.g. https://host/cp/kh_reseller_api. Its
	// path is prepended to each request path and is not signed (spec §1.2).
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
	// Transport performs upstream attempts; nil means NewTransport().
	Transport http.RoundTripper
	// UpstreamRoots are the CAs trusted for an https upstream by the default
	// transport; nil means the system's roots. Set it or Transport, not both.
	UpstreamRoots *x509.CertPool
	// RetryMax is how many times a failed attempt may be retried; 0 means
	// never. Which failures are retried is described in the README.
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

// New checks opts and builds a Proxy.
func New(opts Options) (*Proxy, error) {
	if opts.Upstream == nil || (opts.Upstream.Scheme != "http" && opts.Upstream.Scheme != "https") || opts.Upstream.Host == "" {
		return nil, errors.New("proxy: Upstream must be an absolute http(s) URL")
	}
	if opts.Signer == nil {
		return nil, errors.New("proxy: Signer is required")
	}
	routes, err := newRouteSet(opts.IdempotentRoutes)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		upstream:          opts.Upstream,
		basePath:          strings.TrimSuffix(opts.Upstream.EscapedPath(), "/"),
		basePathUnescaped: strings.TrimSuffix(opts.Upstream.Path, "/"),
		maxBody:           opts.MaxBodyBytes,
		routes:            routes,
		log:               opts.Logger,
		now:               opts.Now,
	}
	if p.maxBody <= 0 {
		p.maxBody = 10 << 20
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	window := opts.IdempotencyWindow
	if window <= 0 {
		window = 10 * time.Minute
	}
	p.flights = newFlights(window)
	next := opts.Transport
	if next == nil {
		t := NewTransport()
		t.TLSClientConfig.RootCAs = opts.UpstreamRoots
		next = t
	} else if opts.UpstreamRoots != nil {
		return nil, errors.New("proxy: set UpstreamRoots or Transport, not both")
	}
	timeout := opts.UpstreamTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	budget := opts.RetryBudget
	if budget <= 0 {
		budget = 30 * time.Second
	}
	p.abandonAfter = budget + timeout
	p.rp = &httputil.ReverseProxy{
		Rewrite: p.rewrite,
		Transport: &signingTransport{
			next:        next,
			signer:      opts.Signer,
			now:         p.now,
			timeout:     timeout,
			retryMax:    max(opts.RetryMax, 0),
			retryBudget: budget,
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
			p.land(f, ex, rec, v != nil)
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
		fl, leader := p.takeOff(ctx, rec, r, ex)
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

// takeOff makes r the leader of its flight, or waits for the leader of an
// identical request and answers with its result. It returns whether r must
// be sent upstream by the caller, with its flight; a follower gets the flight
// whose result it was answered with, or nil when its caller left first.
func (p *Proxy) takeOff(ctx context.Context, w *recorder, r *http.Request, ex *exchange) (*flight, bool) {
	fp := fingerprint(r.Method, ex.target, ex.bodyHash)
	key := ex.idemKey
	for {
		f, leader := p.flights.join(fp, key)
		ex.idemKey = f.key
		r.Header.Set("Idempotency-Key", f.key)
		if leader {
			return f, true
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			p.fail(w, r, ex, ctx.Err())
			return nil, false
		}
		if f.result != nil {
			ex.shared = true
			ex.upstreamStatus = f.result.status
			ex.requestID = f.result.header.Get("X-Request-Id")
			w.replay(f.result)
			return f, false
		}
		// The leader's answer was not kept; ask the API with its key, which
		// makes it replay its stored answer.
		key = f.key
	}
}

// land ends a leader's flight once its answer was written (or not).
func (p *Proxy) land(f *flight, ex *exchange, rec *recorder, aborted bool) {
	delivered := !aborted && rec.err == nil && ex.upstreamStatus > 0 && ex.upstreamStatus < 500
	var result *captured
	if !aborted && !rec.overflow && rec.status != 0 {
		result = &captured{status: rec.status, header: rec.header, body: rec.capture.Bytes()}
	}
	p.flights.finish(f, delivered, result)
}

// prepare refuses what it must, reads the body and picks the
// Idempotency-Key. The returned exchange is never nil.
func (p *Proxy) prepare(w *recorder, r *http.Request) (*exchange, error) {
	ex := &exchange{}
	if r.Method == http.MethodConnect {
		return ex, &Error{Kind: KindMethodNotAllowed, Detail: "CONNECT is not supported: send plain HTTP requests to khproxy"}
	}
	target, err := originForm(r.RequestURI)
	if err != nil {
		return ex, &Error{Kind: KindBadRequest, Detail: err.Error()}
	}
	ex.target = target // for the log, until the upstream target is known
	if strings.HasPrefix(target, "//") {
		return ex, &Error{Kind: KindBadRequest, Detail: "request path must not start with //"}
	}
	rawPath, rawQuery, hasQuery := strings.Cut(target, "?")
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		return ex, &Error{Kind: KindBadRequest, Detail: "request path has an invalid percent-encoding"}
	}
	// The client's escaping is kept byte for byte; only bytes that may not
	// appear raw in a path (such as unencoded UTF-8) are percent-encoded.
	// Being a valid encoding of Path, RawPath is what URL.RequestURI, which
	// the transport writes, returns; the query is sent as is.
	escaped := escapePath(rawPath)
	ex.target = escaped
	if hasQuery {
		ex.target += "?" + rawQuery
	}
	ex.url = &url.URL{
		Scheme:     p.upstream.Scheme,
		Host:       p.upstream.Host,
		Path:       p.basePathUnescaped + path,
		RawPath:    p.basePath + escaped,
		RawQuery:   rawQuery,
		ForceQuery: hasQuery && rawQuery == "",
	}

	if r.ContentLength > p.maxBody {
		return ex, p.tooLarge()
	}
	// The real writer, so that the server can close the connection after a
	// body that was too large.
	body, err := io.ReadAll(http.MaxBytesReader(w.ResponseWriter, r.Body, p.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return ex, p.tooLarge()
		}
		return ex, &Error{Kind: KindBadRequest, Detail: "could not read the request body", Err: err}
	}
	ex.body = body
	ex.bodyHash = signer.BodyHash(body)

	if key := r.Header.Get("Idempotency-Key"); key != "" {
		ex.idemKey = key
	} else if p.routes.match(r.Method, escaped) {
		key, err := newIdempotencyKey()
		if err != nil {
			return ex, &Error{Kind: KindSigning, Detail: "could not generate an Idempotency-Key", Err: err}
		}
		ex.idemKey, ex.autoKey = key, true
		r.Header.Set("Idempotency-Key", key)
	}
	return ex, nil
}

func (p *Proxy) tooLarge() error {
	return &Error{Kind: KindBodyTooLarge, Detail: fmt.Sprintf("the request body exceeds %d bytes (KH_MAX_BODY_BYTES)", p.maxBody)}
}

// originForm returns the path and query of a request-target exactly as the
// client sent them. An absolute-form target (what clients send to a forward
// proxy) loses its scheme and authority: the request goes to the upstream
// whatever the client named.
func originForm(requestURI string) (string, error) {
	if strings.HasPrefix(requestURI, "/") {
		return requestURI, nil
	}
	if _, rest, ok := strings.Cut(requestURI, "://"); ok {
		i := strings.IndexAny(rest, "/?")
		switch {
		case i < 0:
			return "/", nil
		case rest[i] == '?':
			return "/" + rest[i:], nil
		default:
			return rest[i:], nil
		}
	}
	return "", fmt.Errorf("request target %q is not a path: send requests like GET /v1/products", requestURI)
}

// escapePath percent-encodes the bytes of a raw request path that RFC 3986
// does not allow in a path, and keeps everything else, existing %XX escapes
// included, exactly as it is.
func escapePath(raw string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if pathByteAllowed(c) {
			if b.Len() > 0 {
				b.WriteByte(c)
			}
			continue
		}
		if b.Len() == 0 {
			b.Grow(len(raw) + 16)
			b.WriteString(raw[:i])
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	if b.Len() == 0 {
		return raw
	}
	return b.String()
}

// pathByteAllowed reports whether c may appear raw in a path: unreserved,
// sub-delims, ":", "@", "/" and the "%" of an escape.
func pathByteAllowed(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0
}

func newIdempotencyKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// forwardingHeaders are client headers that ReverseProxy drops before
// Rewrite; khproxy forwards them unchanged, as any other client header.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// rewrite points the outgoing request at the upstream, byte for byte.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeFrom(pr.In.Context())
	u := *ex.url
	pr.Out.URL = &u
	pr.Out.Host = ""
	named := connectionTokens(pr.In.Header)
	for _, h := range forwardingHeaders {
		if v, ok := pr.In.Header[h]; ok && !named[h] {
			pr.Out.Header[h] = v
		}
	}
	// The body is already here in full; an upstream 100-continue round
	// trip would only add latency.
	pr.Out.Header.Del("Expect")
	// ReverseProxy re-adds an Upgrade the client asked for; the API has no
	// protocol to switch to, and a switched connection could not be signed.
	if _, ok := pr.Out.Header["Upgrade"]; ok {
		pr.Out.Header.Del("Upgrade")
		pr.Out.Header.Del("Connection")
	}
}

// connectionTokens returns the canonical header names a Connection header
// lists, which are hop-by-hop for this request.
func connectionTokens(h http.Header) map[string]bool {
	named := map[string]bool{}
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				named[textproto.CanonicalMIMEHeaderKey(tok)] = true
			}
		}
	}
	return named
}

// modifyResponse tells the client which Idempotency-Key was used and notes
// the upstream request id for the access log.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	ex := exchangeFrom(resp.Request.Context())
	if ex == nil {
		return nil
	}
	ex.requestID = resp.Header.Get("X-Request-Id")
	ex.upstreamStatus = resp.StatusCode
	if ex.idemKey != "" {
		resp.Header.Set("Idempotency-Key", ex.idemKey)
	}
	return nil
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

// accessLog writes the one line per request. It never logs the secret, the
// signature or the body.
func (p *Proxy) accessLog(r *http.Request, ex *exchange, status int, d time.Duration) {
	level := slog.LevelInfo
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", ex.target),
		slog.Int("status", status),
		slog.Duration("duration", d),
	}
	if ex.idemKey != "" {
		attrs = append(attrs, slog.String("idempotency_key", ex.idemKey), slog.Bool("auto_key", ex.autoKey))
	}
	if ex.requestID != "" {
		attrs = append(attrs, slog.String("request_id", ex.requestID))
	}
	if ex.attempts > 1 {
		attrs = append(attrs, slog.Int("attempts", ex.attempts))
	}
	if ex.shared {
		attrs = append(attrs, slog.Bool("shared_answer", true))
	}
	if ex.err != nil {
		attrs = append(attrs, slog.String("error", ex.err.Error()))
		if ex.err.Kind.Status() >= 500 {
			level = slog.LevelWarn
		}
	}
	p.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// recorder remembers the status written through it for the access log and,
// for a flight's leader, keeps a copy of the response for its followers.
// Unwrap lets http.ResponseController reach the real writer's Flush and
// Hijack.
type recorder struct {
	http.ResponseWriter
	status int
	err    error // first error writing to the client

	capture  *bytes.Buffer // non-nil: copy the body, up to captureLimit
	header   http.Header   // with capture: the headers as written
	overflow bool          // the body did not fit captureLimit
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
		if r.capture != nil {
			r.header = r.ResponseWriter.Header().Clone()
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write passes b to the client. With capture on, a client that went away does
// not stop the copy: the answer is still read whole for the followers.
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if r.capture != nil && !r.overflow {
		if r.capture.Len()+len(b) > captureLimit {
			r.overflow = true
		} else {
			r.capture.Write(b)
		}
	}
	if r.err == nil {
		if _, err := r.ResponseWriter.Write(b); err != nil {
			r.err = err
		}
	}
	if r.err != nil && (r.capture == nil || r.overflow) {
		return 0, r.err
	}
	return len(b), nil
}

// errClientGone records that the client left before its answer went out.
var errClientGone = errors.New("client went away before the answer was sent")

// finish pushes the buffered answer out and reports whether it could have
// reached the client: writes to a closed connection only fail at flush, and
// a client that left before then has cancelled ctx (its request context).
func (r *recorder) finish(ctx context.Context) bool {
	if r.err == nil && ctx.Err() != nil {
		r.err = errClientGone
	}
	if r.err == nil {
		if err := http.NewResponseController(r.ResponseWriter).Flush(); err != nil {
			r.err = err
		}
	}
	return r.err == nil
}

// replay writes a captured response.
func (r *recorder) replay(c *captured) {
	h := r.Header()
	for k, v := range c.header {
		h[k] = v
	}
	r.WriteHeader(c.status)
	_, _ = r.Write(c.body)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// bodyReader returns a fresh reader over the buffered body, or http.NoBody.
func (ex *exchange) bodyReader() io.ReadCloser {
	if len(ex.body) == 0 {
		return http.NoBody
	}
	return io.NopCloser(bytes.NewReader(ex.body))
}

// bufferPool reuses ReverseProxy's 32 KiB copy buffers across requests.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (bufferPool) Get() []byte { return copyBuffers.Get().(*[32 << 10]byte)[:] }
func (bufferPool) Put(b []byte) {
	if len(b) == 32<<10 {
		copyBuffers.Put((*[32 << 10]byte)(b))
	}
}
