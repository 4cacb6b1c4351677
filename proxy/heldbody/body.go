// Package heldbody holds request bodies whole in memory, within a byte
// budget, read once and hashed as they are read.
//
// Its invariant: nothing over the budget is ever read into memory. A body's
// room is reserved in the Budget as its bytes arrive, before they are read
// into the body's buffers (a few KiB at a time are read into a small probe
// first, to learn that they came), and given back
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

	"khproxy/internal/bytebudget"
	"khproxy/signer"
)

// Body is a request body kept in memory for the upstream attempts, with
// the room it holds in its Budget. Room is reserved as the bytes arrive, in
// steps (bytebudget.NextStep): never before a byte is there to be read, so
// a client that declares a large body and sends nothing holds nothing. The
// room is given back once no attempt can read the body any more: when the
// last attempt has been made (Seal) and every attempt's reader is closed,
// or when the request ends (Drop).
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
	hold   *bytebudget.Hold // nil until a read starts
	hash   signer.BodyHasher

	mu       sync.Mutex
	chunks   [][]byte     // the body, in order; one piece when it arrived at once
	bufs     []*pooledBuf // the buffers under chunks
	size     int64
	readers  int  // attempt readers not yet closed
	sealed   bool // no more attempts will be made
	forsaken bool // dropped with readers open: the buffers are not reused
	released bool // the room went back
}

// New returns an empty Body whose room is taken from b.
func New(b *Budget) *Body { return &Body{budget: b} }

// maxPiece bounds one piece of a body, so that a large body does not need
// one large free block of memory.
const maxPiece = 1 << 20

// ReadKnown reads a body of declared length n from r. It fails at once
// with ErrNeverFits, nothing read, when n exceeds the whole budget; then,
// as it reads, with ErrNoRoom when room for the bytes that arrived did not
// come within wait (all steps together), with ctx's error, with
// io.ErrUnexpectedEOF when r ends early, or with r's error. After a
// failure, Drop gives back whatever room was taken.
func (h *Body) ReadKnown(ctx context.Context, r io.Reader, n int64, wait time.Duration) error {
	if n == 0 {
		return nil
	}
	if n > h.budgetLimit() {
		return ErrNeverFits
	}
	h.hold = h.budget.NewHold(n, wait)
	return h.read(ctx, r, true)
}

// ReadUnknown reads a body of unknown length from r, at most limit bytes
// (r enforces the limit, as http.MaxBytesReader does). It fails as
// ReadKnown does; with ErrNeverFits once more comes than the whole budget
// could hold.
func (h *Body) ReadUnknown(ctx context.Context, r io.Reader, limit int64, wait time.Duration) error {
	h.hold = h.budget.NewHold(limit, wait)
	return h.read(ctx, r, false)
}

func (h *Body) budgetLimit() int64 {
	if h.budget == nil {
		return 0
	}
	return h.budget.Limit()
}

// read reads the body piece by piece, without copying but for the bytes
// that tell it more has arrived, which it reads into a small probe before
// reserving room for them. known says that the body is the hold's claim
// long exactly.
func (h *Body) read(ctx context.Context, r io.Reader, known bool) error {
	claim := h.hold.Claim()
	probe := getBuf(bytebudget.ProbeSize)
	defer putBuf(probe)
	var piece []byte
	var held int64
	for {
		if known && h.size == claim {
			return nil
		}
		var n int
		var err error
		if len(piece) < cap(piece) {
			n, err = r.Read(piece[len(piece):cap(piece)])
			h.hash.Write(piece[len(piece) : len(piece)+n])
			piece = piece[:len(piece)+n]
			h.chunks[len(h.chunks)-1] = piece
		} else {
			// Full: reserve more only once more has arrived.
			want := int64(bytebudget.ProbeSize)
			if known {
				want = min(want, claim-h.size)
			}
			n, err = r.Read(probe.b[:want])
			if n > 0 {
				if h.size+int64(n) > claim {
					return ErrNeverFits
				}
				step := min(bytebudget.NextStep(held, h.size, int64(n), claim), max(maxPiece, int64(n)))
				if gerr := h.hold.Grow(ctx, step); gerr != nil {
					return gerr
				}
				held += step
				pb := getBuf(int(step))
				h.bufs = append(h.bufs, pb)
				piece = append(pb.b[:0:step], probe.b[:n]...)
				h.hash.Write(probe.b[:n])
				h.chunks = append(h.chunks, piece)
			}
		}
		h.size += int64(n)
		switch {
		case err == io.EOF && known && h.size < claim:
			return io.ErrUnexpectedEOF
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
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
	if !h.sealed || h.readers > 0 || h.released {
		return
	}
	h.released = true
	if h.hold != nil {
		h.hold.Release()
	}
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
