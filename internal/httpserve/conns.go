package httpserve

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"khproxy/internal/bufresp"
)

// limitListener counts the connections it hands out. Up to max are served.
// At max, a new connection takes the place of the connection that has been
// idle longest between requests (keep-alive), which is closed, as nginx
// does: idle clients give way to new ones. With none idle, up to extra more
// at a time are marked over the limit, which gets their requests refused;
// beyond that, new connections are closed at once, so that a flood cannot
// take every file descriptor. max 0 means no limit.
type limitListener struct {
	net.Listener
	max, extra int
	timeout    []byte // the 408 response for a request whose headers stalled
	log        *slog.Logger

	mu   sync.Mutex
	n    int
	idle list.List // of *conn idle between requests, longest idle first
}

// overLimitConns is how many connections over MaxConns may be answered 503
// at once: enough for a burst of good requests to learn why, few enough to
// keep file descriptors for the upstream.
func overLimitConns(maxConns int) int { return max(8, maxConns/16) }

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.max > 0 {
			l.evictIdle()
		}
		l.mu.Lock()
		over := l.max > 0 && l.n >= l.max
		if over && l.n >= l.max+l.extra {
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		l.n++
		l.mu.Unlock()
		return &conn{Conn: c, l: l, over: over}, nil
	}
}

// evictIdle closes connections idle between requests, longest idle
// first, until there is room for one more, or none is idle. One whose next
// request has begun to arrive is not idle.
func (l *limitListener) evictIdle() {
	for {
		l.mu.Lock()
		if l.n < l.max {
			l.mu.Unlock()
			return
		}
		var victim *conn
		for e := l.idle.Front(); e != nil; e = e.Next() {
			if c := e.Value.(*conn); !c.partial.Load() {
				victim = c
				break
			}
		}
		if victim == nil {
			l.mu.Unlock()
			return
		}
		l.unmarkIdleLocked(victim)
		l.mu.Unlock()
		l.log.Debug("connection limit reached: closing the longest idle keep-alive connection", "remote", victim.RemoteAddr().String())
		_ = victim.Close()
	}
}

func (l *limitListener) markIdle(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unmarkIdleLocked(c)
	c.idleAt = l.idle.PushBack(c)
}

func (l *limitListener) unmarkIdle(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unmarkIdleLocked(c)
}

func (l *limitListener) unmarkIdleLocked(c *conn) {
	if c.idleAt != nil {
		l.idle.Remove(c.idleAt)
		c.idleAt = nil
	}
}

func (l *limitListener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unmarkIdleLocked(c)
	l.n--
}

// conn is one client connection. It tells whether the bytes of a request
// have started to arrive outside a handler, so that a request whose headers
// do not arrive in time gets a 408 rather than a silent close (Go's server
// closes without a word).
type conn struct {
	net.Conn
	l    *limitListener
	over bool // accepted over the limit: its requests are refused

	state    atomic.Int32 // http.ConnState, from the server's hook
	partial  atomic.Bool  // a request's first bytes arrived, its headers have not
	answered atomic.Bool  // a 408 went out
	close    sync.Once
	idleAt   *list.Element // in l.idle while idle; guarded by l.mu
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	active := http.ConnState(c.state.Load()) == http.StateActive
	if n > 0 && !active {
		c.partial.Store(true)
	}
	if err != nil && !active && c.partial.Load() && errors.Is(err, os.ErrDeadlineExceeded) && c.answered.CompareAndSwap(false, true) {
		// Within a request's headers: no handler will answer, so answer
		// here. The server goroutine is blocked in this Read, so nothing
		// else writes to the connection.
		_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Conn.Write(c.l.timeout)
		c.l.log.Info("request headers not received in time: answered 408, closing", "remote", c.RemoteAddr().String())
	}
	return n, err
}

// Write drops what the server writes after a 408 went out: given a request
// cut within its headers, Go's server may answer 400 of its own.
func (c *conn) Write(b []byte) (int, error) {
	if c.answered.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// CloseWrite lets the server half-close the connection before it closes it
// (it does so after a response that closes the connection).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.close.Do(func() { c.l.release(c) })
	return err
}

// trackState is the server's ConnState hook: a request's headers are read
// whole once the connection turns active, and a new request may start once
// it turns idle.
func trackState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*conn)
	if !ok {
		return
	}
	c.state.Store(int32(st))
	if st == http.StateActive || st == http.StateIdle {
		c.partial.Store(false)
	}
	if st == http.StateIdle {
		c.l.markIdle(c)
	} else {
		c.l.unmarkIdle(c)
	}
}

type overLimitKey struct{}

// markOverLimit is the server's ConnContext hook.
func markOverLimit(ctx context.Context, nc net.Conn) context.Context {
	if c, ok := nc.(*conn); ok && c.over {
		return context.WithValue(ctx, overLimitKey{}, true)
	}
	return ctx
}

// refuseOverLimit answers every request on a connection over the limit with
// refuse's 503, and closes the connection after it.
func refuseOverLimit(next http.Handler, refuse func(http.ResponseWriter, *http.Request, int)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(overLimitKey{}) == nil {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		refuse(w, r, http.StatusServiceUnavailable)
	})
}

// plainRefuse is the default Refuse: a short plain-text answer.
func plainRefuse(w http.ResponseWriter, _ *http.Request, status int) {
	http.Error(w, http.StatusText(status), status)
}

// rawResponse renders what refuse writes as the bytes of an HTTP/1.1
// response that closes the connection, for answers given outside a handler.
func rawResponse(refuse func(http.ResponseWriter, *http.Request, int), status int) []byte {
	w := bufresp.New()
	refuse(w, nil, status)
	if w.Status == 0 {
		w.Status = status
	}
	w.Header().Set("Content-Length", fmt.Sprint(w.Body.Len()))
	w.Header().Set("Connection", "close")
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", w.Status, http.StatusText(w.Status))
	_ = w.Header().Write(&b)
	b.WriteString("\r\n")
	b.Write(w.Body.Bytes())
	return b.Bytes()
}

// OpenConns returns how many client connections a server with MaxConns
// maxConns may hold open at once: the ones it serves and the ones it is
// refusing.
func OpenConns(maxConns int) int { return maxConns + overLimitConns(maxConns) }
