package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"khproxy/signer"
)

// readBody reads the whole request body into memory paid for by the budget,
// and hashes it. Nothing is read before its room is reserved: by
// Content-Length in one go, or step by step for a chunked body.
func (p *Proxy) readBody(w *recorder, r *http.Request, ex *exchange) error {
	if r.ContentLength > p.maxBody {
		return p.tooLarge()
	}
	h := &heldBody{budget: p.budget}
	ex.body = h
	var err error
	if r.ContentLength >= 0 {
		err = h.readKnown(r.Context(), r.Body, r.ContentLength, p.budgetWait)
	} else {
		// The real writer, so that the server can close the connection
		// after a body that was too large.
		body := http.MaxBytesReader(w.ResponseWriter, r.Body, p.maxBody)
		err = h.readUnknown(r.Context(), body, p.maxBody, p.budgetWait)
	}
	if err != nil {
		return p.bodyError(err)
	}
	ex.bodyHash = signer.BodyHash(h.data)
	return nil
}

// bodyError maps a failure to read the body to what the client is told.
func (p *Proxy) bodyError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return p.tooLarge()
	case errors.Is(err, errNeverFits):
		return &Error{Kind: KindBodyTooLarge, Detail: fmt.Sprintf("the request body is larger than khproxy's memory budget for bodies (%d bytes)", p.budget.limit)}
	case errors.Is(err, errNoRoom):
		return &Error{Kind: KindOverloaded, Detail: "khproxy's memory budget for request bodies is full: retry shortly", Err: err}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Kind: KindRequestTimeout, Detail: "the request was not received within khproxy's read timeout", Err: err}
	case errors.Is(err, context.Canceled):
		return &Error{Kind: KindClientGone, Detail: "the client went away while sending the body", Err: err}
	}
	return &Error{Kind: KindBadRequest, Detail: "could not read the request body", Err: err}
}

func (p *Proxy) tooLarge() error {
	return &Error{Kind: KindBodyTooLarge, Detail: fmt.Sprintf("the request body exceeds %d bytes", p.maxBody)}
}

// heldBody is a request body kept in memory for the upstream attempts, with
// the room it holds in the budget. The room is given back once no attempt
// can read the body any more: when the last attempt has been made (seal)
// and every attempt's reader is closed, or when the request ends (drop).
type heldBody struct {
	budget *budget

	mu       sync.Mutex
	data     []byte
	reserved int64
	readers  int  // attempt readers not yet closed
	sealed   bool // no more attempts will be made
}

// firstGrowth is the first room reserved for a body of unknown length.
const firstGrowth = 32 << 10

// readKnown reads a body of length n into one buffer of that size.
func (h *heldBody) readKnown(ctx context.Context, body io.Reader, n int64, wait time.Duration) error {
	if n == 0 {
		return nil
	}
	if err := h.reserve(ctx, n, wait); err != nil {
		return err
	}
	h.data = make([]byte, n)
	_, err := io.ReadFull(body, h.data)
	return err
}

// readUnknown reads a body of unknown length, at most limit bytes, into a
// buffer that doubles, reserving each new buffer before it is made (the old
// one is still held while it is copied).
func (h *heldBody) readUnknown(ctx context.Context, body io.Reader, limit int64, wait time.Duration) error {
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			size := min(max(2*int64(cap(buf)), firstGrowth), limit+1, h.budget.limit)
			if size <= int64(cap(buf)) {
				return errNeverFits
			}
			if err := h.reserve(ctx, size, wait); err != nil {
				return err
			}
			grown := make([]byte, len(buf), size)
			copy(grown, buf)
			h.unreserve(int64(cap(buf)))
			buf = grown
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			h.data = buf
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (h *heldBody) reserve(ctx context.Context, n int64, wait time.Duration) error {
	if err := h.budget.acquire(ctx, n, wait); err != nil {
		return err
	}
	h.mu.Lock()
	h.reserved += n
	h.mu.Unlock()
	return nil
}

func (h *heldBody) unreserve(n int64) {
	h.mu.Lock()
	h.reserved -= n
	h.mu.Unlock()
	h.budget.release(n)
}

// size returns the body's length.
func (h *heldBody) size() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(len(h.data))
}

// reader returns a fresh reader over the body for one attempt, or
// http.NoBody. Closing it tells the body that the attempt is done with it.
func (h *heldBody) reader() io.ReadCloser {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.data) == 0 {
		return http.NoBody
	}
	h.readers++
	return &attemptBody{Reader: bytes.NewReader(h.data), h: h}
}

// seal says that no more attempts will be made; the room goes back once the
// open readers are closed.
func (h *heldBody) seal() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sealed = true
	h.releaseIfDoneLocked()
}

// drop gives the room back whatever the readers do: the request has ended.
// A transport that never closes a request body cannot keep the room taken.
func (h *heldBody) drop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sealed, h.readers = true, 0
	h.releaseIfDoneLocked()
}

func (h *heldBody) closeReader() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readers > 0 {
		h.readers--
	}
	h.releaseIfDoneLocked()
}

func (h *heldBody) releaseIfDoneLocked() {
	if !h.sealed || h.readers > 0 || h.reserved == 0 {
		return
	}
	h.budget.release(h.reserved)
	h.reserved = 0
	h.data = nil // collectable once the last attempt's writer lets go
}

// attemptBody is one attempt's reader over a held body.
type attemptBody struct {
	*bytes.Reader
	h    *heldBody
	once sync.Once
}

func (b *attemptBody) Close() error {
	b.once.Do(b.h.closeReader)
	return nil
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
