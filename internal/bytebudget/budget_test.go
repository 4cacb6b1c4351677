package bytebudget

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

func TestNewcomersFirstComeFirstServed(t *testing.T) {
	b := New(100)
	ctx := context.Background()
	first := b.NewHold(80, time.Second)
	if err := first.Grow(ctx, 80); err != nil {
		t.Fatal(err)
	}
	// A large newcomer first, then a small one that would fit now: the
	// small one must not overtake.
	large, small := make(chan error, 1), make(chan error, 1)
	go func() { large <- b.NewHold(60, 5*time.Second).Grow(ctx, 60) }()
	waitWaiting(t, b, 1)
	go func() { small <- b.NewHold(10, 5*time.Second).Grow(ctx, 10) }()
	waitWaiting(t, b, 2)
	select {
	case <-small:
		t.Fatal("a small body overtook a larger one that came first")
	default:
	}
	first.Release()
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

func TestRefusals(t *testing.T) {
	b := New(100)
	ctx := context.Background()
	if err := b.NewHold(101, time.Hour).Grow(ctx, 101); !errors.Is(err, ErrNeverFits) {
		t.Errorf("over the whole budget: %v, want ErrNeverFits at once", err)
	}
	all := b.NewHold(100, time.Second)
	if err := all.Grow(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if err := b.NewHold(1, 20*time.Millisecond).Grow(ctx, 1); !errors.Is(err, ErrNoRoom) {
		t.Errorf("full budget: %v, want ErrNoRoom after the wait", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.NewHold(1, time.Hour).Grow(cctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	if b.Admits(10, 1) {
		t.Error("a full budget admits a new body")
	}
	// A waiter that gave up no longer blocks the queue.
	all.Release()
	if !b.Admits(10, 1) || !b.Admits(1000, 1) {
		t.Error("an empty budget: want a new body admitted, one that may be larger than it too (a chunked body may be small)")
	}
	if err := b.NewHold(100, 0).Grow(ctx, 100); err != nil {
		t.Errorf("after the waiters left: %v", err)
	}
}

// TestWaitIsForTheWholeBody checks that a body's steps share one wait.
func TestWaitIsForTheWholeBody(t *testing.T) {
	b := New(100)
	ctx := context.Background()
	b.NewHold(100, 0).Grow(ctx, 100) //nolint:errcheck // fills the budget
	h := b.NewHold(10, 300*time.Millisecond)
	if err := h.Grow(ctx, 1); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("first wait: %v, want ErrNoRoom", err)
	}
	start := time.Now()
	if err := h.Grow(ctx, 1); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("second wait: %v, want ErrNoRoom", err)
	}
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("a body whose wait was used up waited %s more", d)
	}
}

// TestNoDeadlockBetweenBodies has three bodies of 40 bytes in a budget of
// 90. Two hold 30; a third asks for 30. Granted blindly, all three would
// hold 30 and wait on each other for their last 10 until their wait ran
// out; the budget must make the third wait, so that the first can finish.
func TestNoDeadlockBetweenBodies(t *testing.T) {
	b := New(90)
	ctx := context.Background()
	x, y, z := b.NewHold(40, time.Second), b.NewHold(40, time.Second), b.NewHold(40, 5*time.Second)
	for _, h := range []*Hold{x, y} {
		if err := h.Grow(ctx, 30); err != nil {
			t.Fatal(err)
		}
	}
	zc := make(chan error, 1)
	go func() { zc <- z.Grow(ctx, 30) }()
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Waiting == 0 && len(zc) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := x.Grow(ctx, 10); err != nil {
		t.Fatalf("the first body could not finish: %v", err)
	}
	x.Release()
	if err := <-zc; err != nil {
		t.Fatalf("the third body: %v", err)
	}
	for _, h := range []*Hold{y, z} {
		if err := h.Grow(ctx, 10); err != nil {
			t.Errorf("a body could not finish: %v", err)
		}
		h.Release()
	}
	if st := b.Stats(); st.Reserved != 0 {
		t.Errorf("%d bytes still reserved", st.Reserved)
	}
}

func TestReadPieces(t *testing.T) {
	for _, size := range []int{0, 1, MinStep, ProbeSize + 1, 100 << 10} {
		body := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		for _, oneByte := range []bool{false, true} {
			b := New(1 << 20)
			h := b.NewHold(1<<20, time.Second)
			var r io.Reader = bytes.NewReader(body)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			pieces, err := h.ReadPieces(context.Background(), r)
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			var capacity int64
			for _, p := range pieces {
				capacity += int64(cap(p))
			}
			if got := bytes.Join(pieces, nil); !bytes.Equal(got, body) {
				t.Errorf("size %d one byte %v: read %d bytes, want the body", size, oneByte, len(got))
			}
			if held := h.Held(); held != capacity || held > max(2*int64(size), MinStep) {
				t.Errorf("size %d one byte %v: holds %d for pieces of capacity %d", size, oneByte, held, capacity)
			}
			h.Release()
		}
	}
	h := New(1000).NewHold(100, time.Second)
	if _, err := h.ReadPieces(context.Background(), bytes.NewReader(make([]byte, 101))); !errors.Is(err, ErrNeverFits) {
		t.Errorf("a body over its claim: %v, want ErrNeverFits", err)
	}
}

func waitWaiting(t *testing.T, b *Budget, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Waiting != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", b.Stats().Waiting, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStalledNewcomerBlocksNoOne: a newcomer that waits because its step
// would leave the budget unsafe (its claim, with another's, could not be
// met) does not hold up a small body that fits and can finish.
func TestStalledNewcomerBlocksNoOne(t *testing.T) {
	b := New(100)
	ctx := context.Background()
	if err := b.NewHold(100, time.Second).Grow(ctx, 10); err != nil {
		t.Fatal(err)
	}
	go b.NewHold(100, 5*time.Second).Grow(ctx, 10) //nolint:errcheck // waits, unsafe
	waitWaiting(t, b, 1)
	if err := b.NewHold(5, 0).Grow(ctx, 5); err != nil {
		t.Errorf("a small body behind a newcomer waiting for safety: %v, want it granted at once", err)
	}
}
