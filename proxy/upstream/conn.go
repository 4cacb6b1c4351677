package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"
)

// NewHTTPTransport returns the transport khproxy sends attempts through by
// default: a connection pool as large as the concurrency, TLS verification
// on (the system's roots; set TLSClientConfig.RootCAs, e.g. to RootsWith,
// for more), HTTP/2 when the upstream offers it, HTTPS_PROXY/HTTP_PROXY/
// NO_PROXY honoured, and no transparent gzip (the upstream sees the client's
// own Accept-Encoding and the client gets the bytes the upstream sent). Its
// connections write a held request body in one write.
func NewHTTPTransport() *http.Transport {
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

// RootsWith returns the system's roots plus cas, or nil (the system's roots,
// as crypto/tls reads them) when cas is empty. Where the system has no roots
// (a scratch image) it returns cas alone.
func RootsWith(cas []*x509.Certificate) *x509.CertPool {
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

// dialUpstream dials like dial and wraps the connection in an upstreamConn.
func dialUpstream(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return upstreamConn{c}, nil
	}
}

// upstreamConn is a connection to the upstream (or to the proxy in front of
// it) that writes a request body held in memory straight from its buffer.
//
// http.Transport writes a body of known length over HTTP/1.1 as an
// *io.LimitedReader around it, which hides the body's WriteTo: the
// connection's ReadFrom would copy it through a new 32 KiB buffer, one
// write per 32 KiB. The held body reaches the transport as an io.NopCloser
// over a *bytes.Reader (heldbody.Body.AttemptReader), which keeps the
// reader's WriteTo: its bytes are written here in one write, with no copy
// and no buffer, never more than the limit. Anything else is copied through
// a pooled buffer. Over TLS the transport writes to the tls.Conn above this
// one, and this path is not taken.
type upstreamConn struct{ net.Conn }

// ReadFrom writes r to the connection; see upstreamConn.
func (c upstreamConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if wt, ok := inMemory(lr.R); ok {
			n, err := wt.WriteTo(&cappedWriter{w: c.Conn, n: lr.N})
			lr.N -= n
			if errors.Is(err, errCapped) {
				err = nil // the limit is reached, as io.LimitedReader would stop
			}
			return n, err
		}
	}
	buf := BufferPool{}.Get()
	defer BufferPool{}.Put(buf)
	return io.CopyBuffer(writerOnly{c.Conn}, r, buf)
}

// nopCloserWriterTo is the type io.NopCloser returns for a reader that has
// WriteTo, such as *bytes.Reader.
var nopCloserWriterTo = reflect.TypeOf(io.NopCloser(bytes.NewReader(nil)))

// inMemory returns r's WriteTo when r is a reader over memory, possibly
// behind io.NopCloser (unwrapped as net/http unwraps it): its WriteTo
// consumes exactly what it writes, so a write capped at the limit leaves
// any byte beyond it for the transport to find, and a body longer than its
// Content-Length stays an error. Other readers' WriteTo may read ahead
// through a buffer of their own (*os.File, io.MultiReader) and lose what
// the cap cuts off; they take the copy path.
func inMemory(r io.Reader) (io.WriterTo, bool) {
	if reflect.TypeOf(r) == nopCloserWriterTo {
		r = reflect.ValueOf(r).Field(0).Interface().(io.Reader)
	}
	switch r := r.(type) {
	case *bytes.Reader:
		return r, true
	case *strings.Reader:
		return r, true
	}
	return nil, false
}

// errCapped reports that a cappedWriter got more than its n bytes.
var errCapped = errors.New("upstream: write beyond the body's length")

// cappedWriter writes at most n bytes to w; a write beyond them is cut at n
// and fails with errCapped.
type cappedWriter struct {
	w io.Writer
	n int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	if c.n <= 0 && len(p) > 0 {
		return 0, errCapped
	}
	capped := int64(len(p)) > c.n
	if capped {
		p = p[:c.n]
	}
	m, err := c.w.Write(p)
	c.n -= int64(m)
	if err == nil && capped {
		err = errCapped
	}
	return m, err
}

// writerOnly hides a writer's ReadFrom, so that io.CopyBuffer uses the
// buffer it is given.
type writerOnly struct{ io.Writer }

// BufferPool reuses 32 KiB copy buffers across requests: those of the
// connections' copies of a request body that is not held whole, and, as
// httputil.ReverseProxy.BufferPool, those of its copies of response bodies.
// The zero value is ready; it is safe for concurrent use.
type BufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// Get returns a 32 KiB buffer.
func (BufferPool) Get() []byte { return copyBuffers.Get().(*[32 << 10]byte)[:] }

// Put gives b back for reuse; a buffer of another size is dropped.
func (BufferPool) Put(b []byte) {
	if len(b) == 32<<10 {
		copyBuffers.Put((*[32 << 10]byte)(b))
	}
}
