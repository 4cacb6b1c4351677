// Package heldbody holds request bodies whole in memory, within a byte
// budget, read once and hashed as they are read.
//
// Its invariant: nothing over the budget is ever read into memory. A body's
// room is reserved in the Budget before its bytes are read, and given back
// once no upstream attempt can read the body any more. The package knows
// nothing of HTTP servers, requests or how a refusal is answered: it reads
// from an io.Reader and reports ErrNeverFits, ErrNoRoom or the reader's
// own error.
package heldbody

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"khproxy/signer"
)

// Body is a request body kept in memory for the upstream attempts, with
// the room it holds in its Budget. The room is given back once no attempt
// can read the body any more: when the last attempt has been made (Seal)
// and every attempt's reader is closed, or when the request ends (Drop).
//
// The pieces are pooled buffers (bufpool.go), hashed as they are read, in
// one pass. They go back to their pools only when every reader was closed:
// a body dropped while a transport still holds a reader is left to the
// garbage collector, as that reader may yet read it.
//
// Create a Body with New: the zero value has no budget, and can read only
// a body declared empty. ReadKnown or ReadUnknown is called once, by one goroutine,
// and Hash after it returns; once read, Len, Reader, AttemptReader, Seal
// and Drop are safe for concurrent use.
type Body struct {
	budget *Budget
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

// New returns an empty Body whose room is taken from b.
func New(b *Budget) *Body { return &Body{budget: b} }

// Pieces of a body of unknown length: the first is small, each next one
// twice the last, up to maxPiece, so that at most one piece is part empty.
const (
	firstPiece = 32 << 10
	maxPiece   = 1 << 20
)

// ReadKnown reads a body of declared length n from r into one buffer of
// that size, having first reserved n bytes of room, waiting at most wait
// for it. It fails with ErrNeverFits or ErrNoRoom (nothing read), with
// ctx's error, with io.ErrUnexpectedEOF when r ends early, or with r's
// error. After a failure, Drop gives back whatever room was taken.
func (h *Body) ReadKnown(ctx context.Context, r io.Reader, n int64, wait time.Duration) error {
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
		m, err := r.Read(buf[off:])
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

// ReadUnknown reads a body of unknown length from r, at most limit bytes
// (r enforces the limit, as http.MaxBytesReader does), piece by piece,
// without copying. Its room is reserved in two steps: a small first
// piece, which most such bodies fit; then, if more comes, the most the body
// may still need, at once, the unused part going back at the end. So a body
// never waits for room while holding more than a small piece: bodies that
// each held some and waited for more could wait on each other for ever.
// It fails as ReadKnown does; ErrNeverFits also once more comes than the
// whole budget could hold.
func (h *Body) ReadUnknown(ctx context.Context, r io.Reader, limit int64, wait time.Duration) error {
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
				n, err := r.Read(probe[:])
				if n == 0 && err != nil {
					return ignoreEOF(err)
				}
				extra = probe[:n]
				more := min(limit+1, h.budget.limit) - h.reserved
				if more < int64(n) {
					return ErrNeverFits
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
		n, err := r.Read(piece[len(piece):cap(piece)])
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
func (h *Body) reserve(ctx context.Context, n int64, wait time.Duration) error {
	if h.reserved+n > h.budget.limit {
		return ErrNeverFits
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
func (h *Body) unreserve(n int64) {
	h.mu.Lock()
	h.reserved -= n
	h.mu.Unlock()
	h.budget.release(n)
}

// Hash returns the hex SHA-256 of the bytes read, computed as they were
// read (signer.BodyHash of the body once it was read whole).
func (h *Body) Hash() string { return h.hash.Sum() }

// Len returns the body's length: the bytes read so far.
func (h *Body) Len() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.size
}

// Reader returns a fresh reader over the body for one attempt, or
// http.NoBody. Closing it tells the body that the attempt is done with it;
// a Read after Close fails.
func (h *Body) Reader() io.ReadCloser {
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

// AttemptReader is Reader for an upstream attempt, which also returns done,
// to be called once the transport has finished reading the body (its
// WroteRequest) or will never start; calling it again does nothing. A body
// held in one piece is given as an io.NopCloser over a *bytes.Reader,
// which http.Transport knows to be in memory: it then sends the headers
// and a small body in one write instead of flushing the headers first.
// Its Close tells nothing, hence done.
func (h *Body) AttemptReader() (io.ReadCloser, func()) {
	h.mu.Lock()
	if len(h.chunks) != 1 {
		h.mu.Unlock()
		rd := h.Reader()
		return rd, func() { rd.Close() }
	}
	h.readers++
	r := io.NopCloser(bytes.NewReader(h.chunks[0]))
	h.mu.Unlock()
	return r, sync.OnceFunc(h.closeReader)
}

// Seal says that no more attempts will be made; the room goes back once the
// open readers are closed.
func (h *Body) Seal() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sealed = true
	h.releaseIfDoneLocked()
}

// Drop gives the room back whatever the readers do: the request has ended.
// A transport that never closes a request body cannot keep the room taken.
func (h *Body) Drop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readers > 0 {
		h.forsaken = true
	}
	h.sealed, h.readers = true, 0
	h.releaseIfDoneLocked()
}

func (h *Body) closeReader() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readers > 0 {
		h.readers--
	}
	h.releaseIfDoneLocked()
}

func (h *Body) releaseIfDoneLocked() {
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
	h      *Body
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

var errBodyClosed = errors.New("heldbody: read from a closed request body")
