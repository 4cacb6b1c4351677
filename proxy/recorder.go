package proxy

import (
	"bytes"
	"context"
	"errors"
	"net/http"
)

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
