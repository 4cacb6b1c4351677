package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"

	"khproxy/proxy/flight"
)

// recorder stands between the handler and the client's ResponseWriter. It
// remembers the status for the access log; holds the status line back until
// the first byte or flush, so that a response that fails before anything
// went out can still be answered with a problem; keeps Go's server from
// adding a sniffed Content-Type; and, for a flight's leader, keeps a copy
// of the response for its followers. Unwrap lets http.ResponseController
// reach the real writer's Hijack and deadlines.
//
// ReverseProxy writes and flushes it from its timer goroutine as well as
// from the handler's, under its own lock; nothing else uses it concurrently.
type recorder struct {
	http.ResponseWriter
	status     int
	headerSent bool   // WriteHeader(status) reached the real writer
	closeConn  bool   // answer with Connection: close
	id         string // khproxy's request id, sent as RequestIDHeader
	err        error  // first error writing to the client

	capture  *bytes.Buffer // non-nil: copy the body, up to captureLimit
	header   http.Header   // with capture: the headers as written
	overflow bool          // the body did not fit captureLimit
}

// WriteHeader records code; informational codes pass at once, the final one
// with the first byte or flush.
func (r *recorder) WriteHeader(code int) {
	if code < 200 {
		r.ResponseWriter.WriteHeader(code)
		return
	}
	if r.status != 0 {
		return
	}
	r.status = code
	if r.capture != nil {
		r.header = r.ResponseWriter.Header().Clone()
	}
}

// sendHeader passes the recorded status to the real writer, once.
func (r *recorder) sendHeader() {
	if r.headerSent || r.status == 0 {
		return
	}
	r.headerSent = true
	h := r.ResponseWriter.Header()
	if _, ok := h["Content-Type"]; !ok {
		// The answer had none: keep it so, instead of letting the
		// server sniff one.
		h["Content-Type"] = nil
	}
	if r.closeConn {
		h.Set("Connection", "close")
	}
	r.ResponseWriter.WriteHeader(r.status)
}

// Write passes b to the client. With capture on, a client that went away does
// not stop the copy: the answer is still read whole for the followers.
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	r.sendHeader()
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

// FlushError sends what was written so far, the status line included, to the
// client. Like Write, it reports a failure only when nothing is captured.
func (r *recorder) FlushError() error {
	r.sendHeader()
	if r.err == nil {
		if err := http.NewResponseController(r.ResponseWriter).Flush(); err != nil {
			r.err = err
		}
	}
	if r.err != nil && (r.capture == nil || r.overflow) {
		return r.err
	}
	return nil
}

// reset forgets a response that never reached the real writer, so that
// another can be written in its place.
func (r *recorder) reset() {
	h := r.ResponseWriter.Header()
	for k := range h {
		delete(h, k)
	}
	r.status, r.header, r.overflow = 0, nil, false
	if r.capture != nil {
		r.capture.Reset()
	}
	r.setRequestID(r.id)
}

// setRequestID sends id as the RequestIDHeader of the answer.
func (r *recorder) setRequestID(id string) {
	r.id = id
	if id != "" {
		r.ResponseWriter.Header()[RequestIDHeader] = []string{id}
	}
}

// aborted handles ReverseProxy's abort of a response it could not copy
// whole, and returns what to panic with (nil: nothing). When nothing of the
// response has gone to the client yet, the client gets a 502 or 504 problem
// instead; otherwise the connection must be cut, so that the client sees a
// truncated body and not a short one that looks complete.
func (p *Proxy) aborted(rec *recorder, r *http.Request, ex *exchange, v any) any {
	if v != http.ErrAbortHandler {
		return v
	}
	if rec.err != nil {
		ex.err = &Error{Kind: KindClientGone, Detail: "the client went away during the answer", Err: rec.err}
		return v
	}
	e := errorFor(ex.up.BodyErr)
	if !rec.headerSent {
		rec.reset()
		e.Detail = "the upstream API broke off its answer before anything was sent to the client"
		p.fail(rec, r, ex, e)
		return nil
	}
	e.Detail = "the upstream API broke off its answer: the connection to the client was cut"
	ex.err = e
	// What was written may still wait in the server's buffer (flushDelay):
	// send it before the cut, so that the client sees a truncated body,
	// not nothing.
	_ = http.NewResponseController(rec.ResponseWriter).Flush()
	return v
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
		r.sendHeader()
		if err := http.NewResponseController(r.ResponseWriter).Flush(); err != nil {
			r.err = err
		}
	}
	return r.err == nil
}

// flushComplete sends a finished answer of declared length to the client
// now, so that the bookkeeping after it (access log, metrics) is not part
// of the client's wait, nor of the wait of its next request on the same
// connection. An answer without Content-Length is left to the server, which
// frames a short one itself once the handler returns: a flush now would
// make it chunked.
func (r *recorder) flushComplete() {
	if r.err != nil || !r.headerSent || r.ResponseWriter.Header().Get("Content-Length") == "" {
		return
	}
	if err := http.NewResponseController(r.ResponseWriter).Flush(); err != nil {
		r.err = err
	}
}

// replay writes a captured response, under this request's own id.
func (r *recorder) replay(c *flight.Answer) {
	h := r.Header()
	for k, v := range c.Header {
		if k != RequestIDHeader {
			h[k] = v
		}
	}
	r.WriteHeader(c.Status)
	_, _ = r.Write(c.Body)
}

// Hijack hands the connection over (to answer CONNECT); nothing more is
// written through r after it.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.headerSent = true
	}
	return conn, brw, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
