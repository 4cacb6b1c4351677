package proxy

import (
	"context"
	"errors"
	"io"
	"net"
)

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
		if wt, ok := lr.R.(io.WriterTo); ok {
			n, err := wt.WriteTo(&cappedWriter{w: c.Conn, n: lr.N})
			lr.N -= n
			if err == errCapped {
				err = nil // the limit is reached, as io.LimitedReader would stop
			}
			return n, err
		}
	}
	buf := bufferPool{}.Get()
	defer bufferPool{}.Put(buf)
	return io.CopyBuffer(writerOnly{c.Conn}, r, buf)
}

// errCapped reports that a cappedWriter got more than its n bytes.
var errCapped = errors.New("proxy: write beyond the body's length")

// cappedWriter writes at most n bytes to w; a write beyond them is cut at n
// and fails with errCapped.
type cappedWriter struct {
	w io.Writer
	n int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
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
