package heldbody

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"khproxy/internal/bytebudget"
)

// TestHeldBody reads bodies of many sizes, of declared and unknown length,
// in reads of one byte and of any size: the bytes are kept exactly, the
// room reserved never falls short of what is allocated, and it all goes back.
func TestHeldBody(t *testing.T) {
	const limit = 3 << 20
	for _, size := range []int{0, 1, bytebudget.MinStep - 1, bytebudget.ProbeSize, bytebudget.ProbeSize + 1, 40 << 10, 300 << 10, limit} {
		body := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		for _, known := range []bool{true, false} {
			for _, oneByte := range []bool{false, true} {
				if oneByte && size > 100<<10 {
					continue
				}
				b := NewBudget(8 << 20)
				h := New(b)
				var r io.Reader = bytes.NewReader(body)
				if oneByte {
					r = iotest.OneByteReader(r)
				}
				var err error
				if known {
					err = h.ReadKnown(context.Background(), r, int64(size), time.Second)
				} else {
					err = h.ReadUnknown(context.Background(), r, limit, time.Second)
				}
				if err != nil {
					t.Fatalf("size %d known %v: %v", size, known, err)
				}
				if got := bytes.Join(h.chunks, nil); !bytes.Equal(got, body) || h.Len() != int64(size) {
					t.Fatalf("size %d known %v: kept %d bytes (length %d), want the body", size, known, len(got), h.Len())
				}
				var allocated int64
				for _, c := range h.chunks {
					allocated += int64(cap(c))
				}
				reserved := held(h)
				if reserved < allocated || b.Stats().Reserved != reserved {
					t.Errorf("size %d known %v: reserved %d, budget used %d, allocated %d", size, known, reserved, b.Stats().Reserved, allocated)
				}
				if reserved > max(2*int64(size), bytebudget.MinStep) {
					t.Errorf("size %d known %v: reserved %d, want at most twice the bytes that arrived", size, known, reserved)
				}
				if known && !oneByte && size > 0 && size <= bytebudget.ProbeSize && (len(h.chunks) != 1 || cap(h.chunks[0]) != size) {
					t.Errorf("size %d: %d pieces, first of capacity %d; want one buffer of the declared size", size, len(h.chunks), cap(h.chunks[0]))
				}
				rd := h.Reader()
				if got, _ := io.ReadAll(rd); !bytes.Equal(got, body) {
					t.Errorf("size %d known %v: attempt reader gives %d bytes", size, known, len(got))
				}
				h.Seal()
				if b.Stats().Reserved == 0 && size > 0 {
					t.Errorf("size %d: room given back while an attempt's reader is open", size)
				}
				rd.Close()
				if b.Stats().Reserved != 0 {
					t.Errorf("size %d known %v: %d bytes still reserved after the last reader closed", size, known, b.Stats().Reserved)
				}
			}
		}
	}
}

func TestHeldBodyOverLimit(t *testing.T) {
	b := NewBudget(1 << 20)
	h := New(b)
	err := h.ReadUnknown(context.Background(), bytes.NewReader(make([]byte, 2<<20)), 4<<20, time.Second)
	if !errors.Is(err, ErrNeverFits) {
		t.Errorf("a body larger than the budget: %v, want ErrNeverFits", err)
	}
	h.Drop()
	if b.Stats().Reserved != 0 {
		t.Errorf("%d bytes still reserved after drop", b.Stats().Reserved)
	}
}

// held returns the room h holds.
func held(h *Body) int64 {
	if h.hold == nil {
		return 0
	}
	return h.hold.Held()
}

// TestHeldBodyFollowsTheBytes reads a body that declared far more than
// arrived: it holds room for what arrived, not for what it declared.
func TestHeldBodyFollowsTheBytes(t *testing.T) {
	b := NewBudget(2 << 20)
	for _, known := range []bool{true, false} {
		h := New(b)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			if known {
				done <- h.ReadKnown(context.Background(), pr, 1<<20, time.Second)
			} else {
				done <- h.ReadUnknown(context.Background(), pr, 1<<20, time.Second)
			}
		}()
		if got := b.Stats().Reserved; got != 0 {
			t.Errorf("known %v: %d bytes reserved before any byte arrived, want 0", known, got)
		}
		if _, err := pw.Write(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		if got := waitReserved(t, b, bytebudget.MinStep); got != bytebudget.MinStep {
			t.Errorf("known %v: %d bytes reserved after 10 arrived, want %d", known, got, bytebudget.MinStep)
		}
		pw.CloseWithError(errors.New("client gone"))
		if err := <-done; err == nil {
			t.Errorf("known %v: read succeeded on a broken body", known)
		}
		h.Drop()
		if got := b.Stats().Reserved; got != 0 {
			t.Errorf("known %v: %d bytes reserved after drop", known, got)
		}
	}
}

// waitReserved waits up to a few seconds for b to hold want bytes, and
// returns what it holds then.
func waitReserved(t testing.TB, b *Budget, want int64) int64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := b.Stats().Reserved
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}
