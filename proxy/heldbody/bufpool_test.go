package heldbody

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"khproxy/signer"
)

func TestBodyClass(t *testing.T) {
	prevClass, prevSize := -1, 0
	for _, n := range []int{0, 1, 511, 512, 513, 640, 641, 1000, 1024, 1025, 4096, 64 << 10, 100_000, 1 << 20, 1<<20 + 1, 10 << 20, 16 << 20} {
		class, size := bodyClass(n)
		if size < n {
			t.Errorf("bodyClass(%d) = %d, %d: smaller than the body", n, class, size)
		}
		if n > minPooled && size > n+n/4 {
			t.Errorf("bodyClass(%d) = %d, %d: more than 25%% larger than the body", n, class, size)
		}
		if class < prevClass || (class == prevClass && size != prevSize) || (class > prevClass && size <= prevSize) {
			t.Errorf("bodyClass(%d) = %d, %d after %d, %d: classes and sizes must grow together", n, class, size, prevClass, prevSize)
		}
		if class >= len(bodyPools) {
			t.Errorf("bodyClass(%d) = %d: beyond the %d pools", n, class, len(bodyPools))
		}
		prevClass, prevSize = class, size
	}
	for _, n := range []int{16<<20 + 1, 100 << 20} {
		if class, size := bodyClass(n); class != -1 || size != n {
			t.Errorf("bodyClass(%d) = %d, %d; want -1, %d (not pooled)", n, class, size, n)
		}
	}
}

func TestGetBufReuses(t *testing.T) {
	pb := getBuf(1000)
	if len(pb.b) != 1000 || cap(pb.b) != 1024 {
		t.Fatalf("getBuf(1000): len %d cap %d, want 1000 and 1024", len(pb.b), cap(pb.b))
	}
	putBuf(pb)
	// A pool may drop what it was given; when it does not, the buffer
	// comes back sized for the new body.
	again := getBuf(900)
	if len(again.b) != 900 || cap(again.b) != 1024 {
		t.Errorf("getBuf(900): len %d cap %d, want 900 and 1024", len(again.b), cap(again.b))
	}
	big := getBuf(20 << 20)
	if len(big.b) != 20<<20 || big.class != -1 {
		t.Errorf("getBuf(20 MiB): len %d class %d, want 20 MiB unpooled", len(big.b), big.class)
	}
	putBuf(big) // not pooled: a no-op
}

// TestAttemptReaderDone reads a one-piece body through AttemptReader: its
// room comes back when the attempt is done with it (done, called by the
// transport's WroteRequest) after the last attempt, not when the transport
// closes the reader, which tells nothing.
func TestAttemptReaderDone(t *testing.T) {
	b := NewBudget(1 << 20)
	h := New(b)
	body := bytes.Repeat([]byte("k"), 3000)
	if err := h.ReadKnown(context.Background(), bytes.NewReader(body), int64(len(body)), time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := h.Hash(), signer.BodyHash(body); got != want {
		t.Errorf("hash read in one pass = %s, want %s", got, want)
	}
	rd, done := h.AttemptReader()
	if got, _ := io.ReadAll(rd); !bytes.Equal(got, body) {
		t.Fatalf("attempt reader gives %d bytes, want the body", len(got))
	}
	rd.Close()
	h.Seal()
	if b.Stats().Reserved == 0 {
		t.Error("room given back before the attempt was done with the body")
	}
	done()
	done()
	if b.Stats().Reserved != 0 {
		t.Errorf("%d bytes still reserved after the attempt was done", b.Stats().Reserved)
	}
}
