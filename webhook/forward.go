package webhook

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// DefaultForwardTimeout bounds one forward when Forwarder.Timeout is zero.
const DefaultForwardTimeout = 10 * time.Second

// Forwarder is the usual Receiver.Next: it POSTs each verified delivery to
// the app at URL with the original body bytes and headers (the signature
// header included, so that an app may verify again), and passes the app's
// answer back. An app that cannot be reached gives 503, one that does not
// answer within Timeout 504, both as problem+json; either way the sender will
// retry.
//
// The request goes to URL exactly, whatever path the delivery came in on.
// Hop-by-hop headers (RFC 9110 §7.6.1) are dropped, as by any proxy; the
// sender's X-Forwarded-* headers are kept as they came, none are added. The
// forward is not cancelled when the sender hangs up, so that an app is not
// cut off halfway through an event: Timeout alone bounds it.
//
// Set the fields before the first request and do not change them after; from
// then on a Forwarder is safe for concurrent use. URL is required.
type Forwarder struct {
	// URL of the app's webhook handler, absolute http or https.
	URL *url.URL
	// Timeout bounds one forward, from sending to the end of the app's
	// answer; zero means DefaultForwardTimeout.
	Timeout time.Duration
	// Transport sends the forwards; nil means http.DefaultTransport.
	Transport http.RoundTripper
	// Logger receives the reason a forward failed (the URL's host only,
	// never its path or query, which may hold a token); nil discards.
	Logger *slog.Logger

	once  sync.Once
	proxy *httputil.ReverseProxy
}

// forwardedHeaders are the headers httputil.ReverseProxy's Rewrite mode
// strips from the outgoing request; the app gets them as the sender sent them.
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

func (f *Forwarder) init() {
	f.once.Do(func() {
		log := f.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		f.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				u := *f.URL
				pr.Out.URL = &u
				pr.Out.Host = ""
				for _, h := range forwardedHeaders {
					if v, ok := pr.In.Header[h]; ok {
						pr.Out.Header[h] = v
					}
				}
			},
			Transport: f.Transport,
			ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				o := OutcomeAppUnreachable
				if errors.Is(err, context.DeadlineExceeded) {
					o = OutcomeAppTimeout
				}
				log.Warn("webhook forward failed", "outcome", string(o), "app", f.URL.Host, "error", stripURL(err))
				noteOutcome(r.Context(), o)
				writeProblem(w, o)
			},
		}
	})
}

// ServeHTTP forwards r to the app; see Forwarder.
func (f *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.init()
	if f.URL == nil {
		noteOutcome(r.Context(), OutcomeAppUnreachable)
		writeProblem(w, OutcomeAppUnreachable)
		return
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultForwardTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
	defer cancel()
	f.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// stripURL drops the *url.Error wrapper, which quotes the whole URL.
func stripURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}
