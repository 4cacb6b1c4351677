package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"khproxy/signer"
)

// NewTransport returns the upstream transport khproxy uses by default: a
// connection pool sized for a busy sidecar, TLS verification on, HTTP/2 when
// the upstream offers it, HTTPS_PROXY/HTTP_PROXY/NO_PROXY honoured, and no
// transparent gzip (the upstream sees the client's own Accept-Encoding and the
// client gets the bytes the upstream sent).
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// errAttemptTimeout marks an attempt that got no response headers within the
// upstream timeout.
var errAttemptTimeout = errors.New("no response headers within KH_UPSTREAM_TIMEOUT")

// signingTransport signs each attempt with a fresh timestamp and nonce and
// hands it to next.
type signingTransport struct {
	next    http.RoundTripper
	signer  *signer.Signer
	now     func() time.Time
	timeout time.Duration
}

// RoundTrip sends req, which ReverseProxy built from a client request whose
// exchange is in the context.
func (t *signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchangeFrom(req.Context())
	if ex == nil {
		return nil, errors.New("proxy: request without exchange")
	}
	return t.attempt(req, ex)
}

// attempt sends one signed copy of req. Its deadline covers the time until
// response headers; the body may then stream for as long as it takes.
func (t *signingTransport) attempt(req *http.Request, ex *exchange) (*http.Response, error) {
	ex.attempts++
	h, err := t.signer.Sign(req.Method, ex.target, ex.bodyHash, t.now())
	if err != nil {
		return nil, &Error{Kind: KindSigning, Detail: "khproxy could not sign the request; see its log", Err: err}
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(t.timeout, func() { cancel(errAttemptTimeout) })

	out := req.Clone(ctx)
	h.Apply(out.Header)
	out.Body = ex.bodyReader()
	// No GetBody: http.Transport must not resend this signature on its own.
	out.GetBody = nil
	out.ContentLength = int64(len(ex.body))
	out.TransferEncoding = nil

	resp, err := t.next.RoundTrip(out)
	if !timer.Stop() && err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errAttemptTimeout) {
			err = errors.Join(errAttemptTimeout, err)
		}
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, nil
}

// cancelOnClose releases an attempt's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	once   sync.Once
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.cancel)
	return err
}
