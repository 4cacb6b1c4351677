package heldbody

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

func TestBudgetFirstComeFirstServed(t *testing.T) {
	b := NewBudget(100)
	ctx := context.Background()
	if err := b.acquire(ctx, 80, time.Second); err != nil {
		t.Fatal(err)
	}
	// A large waiter first, then a small one that would fit now: the small
	// one must not overtake.
	large, small := make(chan error, 1), make(chan error, 1)
	go func() { large <- b.acquire(ctx, 60, 5*time.Second) }()
	waitWaiting(t, b, 1)
	go func() { small <- b.acquire(ctx, 10, 5*time.Second) }()
	waitWaiting(t, b, 2)
	select {
	case <-small:
		t.Fatal("a small request overtook a larger one that came first")
	default:
	}
	b.release(80)
	if err := <-large; err != nil {
		t.Fatalf("large: %v", err)
	}
	if err := <-small; err != nil {
		t.Fatalf("small: %v", err)
	}
	if st := b.Stats(); st.Reserved != 70 || st.Peak != 80 || st.Waiting != 0 {
		t.Errorf("stats %+v, want 70 reserved, peak 80, none waiting", st)
	}
}

func TestBudgetRefusals(t *testing.T) {
	b := NewBudget(100)
	ctx := context.Background()
	if err := b.acquire(ctx, 101, time.Hour); !errors.Is(err, ErrNeverFits) {
		t.Errorf("over the whole budget: %v, want ErrNeverFits at once", err)
	}
	if err := b.acquire(ctx, 100, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.acquire(ctx, 1, 20*time.Millisecond); !errors.Is(err, ErrNoRoom) {
		t.Errorf("full budget: %v, want ErrNoRoom after the wait", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.acquire(cctx, 1, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	// A waiter that gave up no longer blocks the queue.
	b.release(100)
	if err := b.acquire(ctx, 100, 0); err != nil {
		t.Errorf("after the waiters left: %v", err)
	}
}

func waitWaiting(t *testing.T, b *Budget, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		got := b.waiters.Len()
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHeldBody reads bodies of many sizes, of declared and unknown length,
// in reads of one byte and of any size: the bytes are kept exactly, the
// room reserved never falls short of what is allocated, and it all goes back.
func TestHeldBody(t *testing.T) {
	const limit = 3 << 20
	for _, size := range []int{0, 1, firstPiece - 1, firstPiece, firstPiece + 1, firstPiece + 512, 300 << 10, limit} {
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
				if h.reserved < allocated || b.used != h.reserved {
					t.Errorf("size %d known %v: reserved %d, budget used %d, allocated %d", size, known, h.reserved, b.used, allocated)
				}
				if known && size > 0 && (len(h.chunks) != 1 || cap(h.chunks[0]) != size) {
					t.Errorf("size %d: %d pieces, first of capacity %d; want one buffer of the declared size", size, len(h.chunks), cap(h.chunks[0]))
				}
				rd := h.Reader()
				if got, _ := io.ReadAll(rd); !bytes.Equal(got, body) {
					t.Errorf("size %d known %v: attempt reader gives %d bytes", size, known, len(got))
				}
				h.Seal()
				if b.used == 0 && size > 0 {
					t.Errorf("size %d: room given back while an attempt's reader is open", size)
				}
				rd.Close()
				if b.used != 0 {
					t.Errorf("size %d known %v: %d bytes still reserved after the last reader closed", size, known, b.used)
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
	if b.used != 0 {
		t.Errorf("%d bytes still reserved after drop", b.used)
	}
}
