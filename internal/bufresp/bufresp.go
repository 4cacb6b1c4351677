// Package bufresp is an http.ResponseWriter that keeps what a handler
// writes, for answers rendered before (or instead of) being sent: a
// refusal written as raw bytes outside any handler, a stored answer to
// replay later.
package bufresp

import (
	"bytes"
	"net/http"
)

// Writer keeps a response in memory. Status is the first status written
// (200 once the body is written without one; 0 while nothing was). The
// zero value has no header map: use New. A Writer is not safe for
// concurrent use, as no ResponseWriter is.
type Writer struct {
	header http.Header
	Status int
	Body   bytes.Buffer
}

// New returns an empty Writer.
func New() *Writer { return &Writer{header: http.Header{}} }

// Header returns the response header map.
func (w *Writer) Header() http.Header { return w.header }

// WriteHeader records status unless one was recorded already.
func (w *Writer) WriteHeader(status int) {
	if w.Status == 0 {
		w.Status = status
	}
}

// Write appends p to Body, recording 200 when no status was written.
func (w *Writer) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.Body.Write(p)
}
