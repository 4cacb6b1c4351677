package proxy

import (
	"bytes"
	"context"
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
// connection's ReadFrom then copies it through a new 32 KiB buffer, one
// write per 32 KiB. The held body reaches the transport as a bytes.Reader
// (heldbody.Body.AttemptReader); its bytes are written here in one write,
// with no copy and no buffer. Anything else is copied through a pooled buffer.
// Over TLS the transport writes to the tls.Conn above this one, and this
// path is not taken.
type upstreamConn struct{ net.Conn }

// ReadFrom writes r to the connection; see upstreamConn.
func (c upstreamConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if br, ok := lr.R.(*bytes.Reader); ok && int64(br.Len()) <= lr.N {
			n, err := br.WriteTo(c.Conn)
			lr.N -= n
			return n, err
		}
	}
	buf := bufferPool{}.Get()
	defer bufferPool{}.Put(buf)
	return io.CopyBuffer(writerOnly{c.Conn}, r, buf)
}

// writerOnly hides a writer's ReadFrom, so that io.CopyBuffer uses the
// buffer it is given.
type writerOnly struct{ io.Writer }
