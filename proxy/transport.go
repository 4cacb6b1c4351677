package proxy

import (
	"context"
	"net/http"

	"khproxy/proxy/upstream"
)

// NewTransport returns the upstream transport khproxy uses by default: a
// connection pool as large as the concurrency, TLS verification on, HTTP/2 when
// the upstream offers it, HTTPS_PROXY/HTTP_PROXY/NO_PROXY honoured, and no
// transparent gzip (the upstream sees the client's own Accept-Encoding and the
// client gets the bytes the upstream sent). It is upstream.NewHTTPTransport.
func NewTransport() *http.Transport { return upstream.NewHTTPTransport() }

// newUpstream builds the RoundTripper that signs, paces and retries each
// request's attempts (package upstream) from o, which has its defaults.
func newUpstream(o Options, stop context.Context) (*upstream.Transport, error) {
	return upstream.New(upstream.Options{
		Next:        o.Transport,
		Signer:      o.Signer,
		Timeout:     o.UpstreamTimeout,
		RetryMax:    o.RetryMax,
		RetryBudget: o.RetryBudget,
		IdleTimeout: o.UpstreamIdleTimeout,
		Limiter:     o.Limiter,
		Stop:        stop,
		Logger:      o.Logger,
		Metrics:     o.Metrics,
		Now:         o.Now,
	})
}

// withCall tells the upstream transport what it must know of ex, whose
// target, body and key no longer change, and returns ctx carrying it; the
// transport reports its attempts into ex.up.
func (ex *exchange) withCall(ctx context.Context) context.Context {
	ex.up.Target, ex.up.BodyHash, ex.up.Body, ex.up.IdempotencyKey = ex.target, ex.bodyHash, ex.body, ex.idemKey
	ex.up.RequestID, ex.up.OwnKey = ex.id, ex.autoKey
	return upstream.WithCall(ctx, &ex.up)
}
