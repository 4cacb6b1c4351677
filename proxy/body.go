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
// Content-Length in one go, or piece by piece for a chunked body.
func (p *Proxy) readBody(w *recorder, r *http.Request, ex *exchange) error {
	h := &heldBody{budget: p.budget}
	ex.body = h
	defer p.receiving(w)()
	var err error
	switch {
	case r.ContentLength > p.maxBody:
		err = &http.MaxBytesError{Limit: p.maxBody}
	case r.ContentLength >= 0:
		err = h.readKnown(r.Context(), r.Body, r.ContentLength, p.budgetWait)
	default:
		// The real writer, so that the server can close the connection
		// after a body that was too large.
		body := http.MaxBytesReader(w.ResponseWriter, r.Body, p.maxBody)
		err = h.readUnknown(r.Context(), body, p.maxBody, p.budgetWait)
	}
	if err != nil {
		// The rest of the body is unread: close the connection rather
		// than let the server read it before answering.
		w.closeConn = true
		var mbe *http.MaxBytesError
		ex.refusedUnread = errors.As(err, &mbe) || errors.Is(err, errNeverFits) || errors.Is(err, errNoRoom)
		return p.bodyError(err)
	}
	ex.bodyHash = h.hash.Sum()
	return nil
}

// drainRefused reads and discards, once the answer has gone out, the body
// of a request refused before it was read (413, or 503 for want of room),
// up to the body limit and within the read timeout: a client still sending
// it then gets to read the answer, instead of a connection reset when the
// connection closes on unread bytes. Nothing of it is kept.
func (p *Proxy) drainRefused(w *recorder, r *http.Request, ex *exchange) {
	if !ex.refusedUnread {
		return
	}
	rc := http.NewResponseController(w.ResponseWriter)
	if rc.EnableFullDuplex() != nil || rc.Flush() != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, r.Body, p.maxBody+1)
}

// bodyError maps a failure to read the body to what the client is told.
func (p *Proxy) bodyError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &Error{Kind: KindBodyTooLarge, Detail: fmt.Sprintf("the request body exceeds %d bytes", p.maxBody)}
	case errors.Is(err, errNeverFits):
		return &Error{Kind: KindBodyTooLarge, Detail: fmt.Sprintf("the request body is larger than khproxy's memory budget for bodies (%d bytes)", p.budget.limit)}
	case errors.Is(err, errNoRoom):
		return &Error{Kind: KindOverloaded, Detail: "khproxy's memory budget for request bodies is full: retry shortly", Err: err, RetryAfter: time.Second}
	case errors.Is(err, os.ErrDeadlineExceeded) && p.stopping():
		return &Error{Kind: KindShuttingDown, Detail: "khproxy is shutting down: nothing was sent; send the request again", Err: err, RetryAfter: time.Second}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Kind: KindRequestTimeout, Detail: "the request was not received within khproxy's read timeout", Err: err}
	case errors.Is(err, context.Canceled):
		return &Error{Kind: KindClientGone, Detail: "the client went away while sending the body", Err: err}
	}
	return &Error{Kind: KindBadRequest, Detail: "could not read the request body", Err: err}
}

// heldBody is a request body kept in memory for the upstream attempts, with
// the room it holds in the budget. The room is given back once no attempt
// can read the body any more: when the last attempt has been made (seal)
// and every attempt's reader is closed, or when the request ends (drop).
//
// The pieces are pooled buffers (bufpool.go), hashed as they are read, in
// one pass. They go back to their pools only when every reader was closed:
// a body dropped while a transport still holds a reader is left to the
// garbage collector, as that reader may yet read it.
type heldBody struct {
	budget *budget
	hash   signer.BodyHasher

	mu       sync.Mutex
	chunks   [][]byte     // the body, in order; one piece when its length was declared
	bufs     []*pooledBuf // the buffers under chunks
	size     int64
	reserved int64
	readers  int  // attempt readers not yet closed
	sealed   bool // no more attempts will be made
	forsaken bool // dropped with readers open: the buffers are not reused
}

// Pieces of a body of unknown length: the first is small, each next one
// twice the last, up to maxPiece, so that at most one piece is part empty.
const (
	firstPiece = 32 << 10
	maxPiece   = 1 << 20
)

// readKnown reads a body of length n into one buffer of that size.
func (h *heldBody) readKnown(ctx context.Context, body io.Reader, n int64, wait time.Duration) error {
	if n == 0 {
		return nil
	}
	if err := h.reserve(ctx, n, wait); err != nil {
		return err
	}
	// The budget counts the body's bytes; its pooled buffer may be up to a
	// quarter larger (its size class).
	pb := getBuf(int(n))
	h.bufs = append(h.bufs, pb)
	buf := pb.b[:n:n]
	for off := 0; off < len(buf); {
		m, err := body.Read(buf[off:])
		h.hash.Write(buf[off : off+m])
		off += m
		if err == io.EOF && off < len(buf) {
			return io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return err
		}
	}
	h.chunks, h.size = [][]byte{buf}, n
	return nil
}

// readUnknown reads a body of unknown length, at most limit bytes, piece by
// piece, without copying. Its room is reserved in two steps: a small first
// piece, which most such bodies fit; then, if more comes, the most the body
// may still need, at once, the unused part going back at the end. So a body
// never waits for room while holding more than a small piece: bodies that
// each held some and waited for more could wait on each other for ever.
func (h *heldBody) readUnknown(ctx context.Context, body io.Reader, limit int64, wait time.Duration) error {
	if err := h.reserve(ctx, min(firstPiece, limit+1), wait); err != nil {
		return err
	}
	var allocated int64
	var piece, extra []byte
	var probe [512]byte
	for {
		if len(piece) == cap(piece) {
			if allocated == h.reserved && allocated > 0 {
				// Full: ask for more room only if more comes.
				n, err := body.Read(probe[:])
				if n == 0 && err != nil {
					return ignoreEOF(err)
				}
				extra = probe[:n]
				more := min(limit+1, h.budget.limit) - h.reserved
				if more < int64(n) {
					return errNeverFits
				}
				if err := h.reserve(ctx, more, wait); err != nil {
					return err
				}
			}
			size := min(max(2*int64(cap(piece)), firstPiece), maxPiece, h.reserved-allocated)
			pb := getBuf(int(size))
			h.bufs = append(h.bufs, pb)
			piece = append(pb.b[:0:size], extra...)
			h.hash.Write(extra)
			allocated += size
			h.chunks = append(h.chunks, piece)
			h.size += int64(len(extra))
			extra = nil
		}
		n, err := body.Read(piece[len(piece):cap(piece)])
		h.hash.Write(piece[len(piece) : len(piece)+n])
		piece = piece[:len(piece)+n]
		h.chunks[len(h.chunks)-1] = piece
		h.size += int64(n)
		if err == io.EOF {
			h.unreserve(h.reserved - allocated)
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func ignoreEOF(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// reserve takes n more bytes of room; n beyond what is left of the whole
// budget can never fit.
func (h *heldBody) reserve(ctx context.Context, n int64, wait time.Duration) error {
	if h.reserved+n > h.budget.limit {
		return errNeverFits
	}
	if err := h.budget.acquire(ctx, n, wait); err != nil {
		return err
	}
	h.mu.Lock()
	h.reserved += n
	h.mu.Unlock()
	return nil
}

// unreserve gives n bytes of room back.
func (h *heldBody) unreserve(n int64) {
	h.mu.Lock()
	h.reserved -= n
	h.mu.Unlock()
	h.budget.release(n)
}

// length returns the body's length.
func (h *heldBody) length() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.size
}

// reader returns a fresh reader over the body for one attempt, or
// http.NoBody. Closing it tells the body that the attempt is done with it.
func (h *heldBody) reader() io.ReadCloser {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.size == 0 {
		return http.NoBody
	}
	h.readers++
	var r io.Reader = bytes.NewReader(h.chunks[0])
	if len(h.chunks) > 1 {
		readers := make([]io.Reader, len(h.chunks))
		for i, c := range h.chunks {
			readers[i] = bytes.NewReader(c)
		}
		r = io.MultiReader(readers...)
	}
	return &attemptBody{r: r, h: h}
}

// attemptReader is reader for an upstream attempt, which also returns done,
// to be called once the transport has finished reading the body (its
// WroteRequest) or will never start. A body held in one piece is given as
// an io.NopCloser over a bytes.Reader, which http.Transport knows to be in
// memory: it then sends the headers and a small body in one write instead
// of flushing the headers first. Its Close tells nothing, hence done.
func (h *heldBody) attemptReader() (io.ReadCloser, func()) {
	h.mu.Lock()
	if len(h.chunks) != 1 {
		h.mu.Unlock()
		rd := h.reader()
		return rd, func() { rd.Close() }
	}
	h.readers++
	r := io.NopCloser(bytes.NewReader(h.chunks[0]))
	h.mu.Unlock()
	return r, sync.OnceFunc(h.closeReader)
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
	if h.readers > 0 {
		h.forsaken = true
	}
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
	h.chunks = nil // collectable once the last attempt's writer lets go
	if !h.forsaken {
		for _, pb := range h.bufs {
			putBuf(pb)
		}
	}
	h.bufs = nil
}

// attemptBody is one attempt's reader over a held body. Read and Close
// exclude each other, so that once Close has returned nothing reads the
// buffers, which may then go back to their pools.
type attemptBody struct {
	mu     sync.Mutex
	r      io.Reader
	h      *heldBody
	closed bool
}

func (b *attemptBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	return b.r.Read(p)
}

func (b *attemptBody) Close() error {
	b.mu.Lock()
	closed := b.closed
	b.closed = true
	b.mu.Unlock()
	if !closed {
		b.h.closeReader()
	}
	return nil
}

var errBodyClosed = errors.New("proxy: read from a closed request body")

// bufferPool reuses ReverseProxy's 32 KiB copy buffers across requests.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (bufferPool) Get() []byte { return copyBuffers.Get().(*[32 << 10]byte)[:] }
func (bufferPool) Put(b []byte) {
	if len(b) == 32<<10 {
		copyBuffers.Put((*[32 << 10]byte)(b))
	}
}
