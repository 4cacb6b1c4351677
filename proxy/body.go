package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"khproxy/signer"
)

// readBody reads the whole request body, up to the limit, and hashes it.
func (p *Proxy) readBody(w *recorder, r *http.Request, ex *exchange) error {
	if r.ContentLength > p.maxBody {
		return p.tooLarge()
	}
	// The real writer, so that the server can close the connection after a
	// body that was too large.
	body, err := io.ReadAll(http.MaxBytesReader(w.ResponseWriter, r.Body, p.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return p.tooLarge()
		}
		return &Error{Kind: KindBadRequest, Detail: "could not read the request body", Err: err}
	}
	ex.body = body
	ex.bodyHash = signer.BodyHash(body)
	return nil
}

func (p *Proxy) tooLarge() error {
	return &Error{Kind: KindBodyTooLarge, Detail: fmt.Sprintf("the request body exceeds %d bytes", p.maxBody)}
}

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
