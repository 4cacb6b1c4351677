package logbatch_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/internal/logbatch"
	"khproxy/internal/testutil"
)

// sink records every write it gets, each as one piece.
type sink struct {
	mu     sync.Mutex
	writes []string
	err    error
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes = append(s.writes, string(p))
	if s.err != nil {
		return 0, s.err
	}
	return len(p), nil
}

func (s *sink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.writes...)
}

// never is a delay no test waits for.
const never = time.Hour

func TestWriterHoldsUntilFlush(t *testing.T) {
	s := &sink{}
	w := logbatch.NewWriter(s, never, 0)
	for _, line := range []string{"a\n", "b\n", "c\n"} {
		if n, err := w.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", line, n, err)
		}
	}
	if got := s.got(); len(got) != 0 {
		t.Fatalf("written before Flush: %q", got)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.got(), []string{"a\nb\nc\n"}; !slices.Equal(got, want) {
		t.Errorf("writes = %q, want %q (one write, in order)", got, want)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := s.got(); len(got) != 1 {
		t.Errorf("an empty Flush wrote: %q", got)
	}
}

func TestWriterFlushesAfterDelay(t *testing.T) {
	s := &sink{}
	w := logbatch.NewWriter(s, time.Millisecond, 0)
	w.Write([]byte("a\n"))
	testutil.WaitFor(t, "the held line written by the timer", func() bool { return len(s.got()) == 1 })
	w.Write([]byte("b\n"))
	testutil.WaitFor(t, "the next line written by the timer", func() bool { return len(s.got()) == 2 })
	if got, want := s.got(), []string{"a\n", "b\n"}; !slices.Equal(got, want) {
		t.Errorf("writes = %q, want %q", got, want)
	}
}

func TestWriterWritesAFullBatchAtOnce(t *testing.T) {
	s := &sink{}
	w := logbatch.NewWriter(s, never, 8)
	w.Write([]byte("1234\n"))
	if got := s.got(); len(got) != 0 {
		t.Fatalf("written below the size: %q", got)
	}
	w.Write([]byte("5678\n"))
	if got, want := s.got(), []string{"1234\n5678\n"}; !slices.Equal(got, want) {
		t.Errorf("writes = %q, want %q once the size is reached", got, want)
	}
}

func TestWriterClose(t *testing.T) {
	s := &sink{}
	w := logbatch.NewWriter(s, never, 0)
	w.Write([]byte("held\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("after\n"))
	if got, want := s.got(), []string{"held\n", "after\n"}; !slices.Equal(got, want) {
		t.Errorf("writes = %q, want %q (held flushed by Close, later lines straight through)", got, want)
	}
}

func TestWriterReportsTheUnderlyingError(t *testing.T) {
	boom := errors.New("disk full")
	s := &sink{err: boom}
	w := logbatch.NewWriter(s, never, 0)
	w.Write([]byte("x\n"))
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Errorf("Flush = %v, want %v", err, boom)
	}
	if err := w.Close(); !errors.Is(err, boom) {
		t.Errorf("Close = %v, want %v", err, boom)
	}
}

// TestWriterConcurrent writes from many goroutines through small batches:
// every line arrives whole, once, and each goroutine's lines in the order it
// wrote them.
func TestWriterConcurrent(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	s := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	w := logbatch.NewWriter(s, 50*time.Microsecond, 256)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, "g%d line %04d %s\n", g, i, strings.Repeat("x", i%40))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	n := 0
	for line := range strings.SplitSeq(strings.TrimSuffix(out.String(), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || len(f) > 4 || f[1] != "line" {
			t.Fatalf("torn line %q", line)
		}
		var g, i int
		_, err1 := fmt.Sscanf(f[0], "g%d", &g)
		_, err2 := fmt.Sscanf(f[2], "%d", &i)
		if err1 != nil || err2 != nil || g < 0 || g >= writers {
			t.Fatalf("torn line %q", line)
		}
		pad := ""
		if len(f) == 4 {
			pad = f[3]
		}
		if i != next[g] || len(pad) != i%40 {
			t.Fatalf("line %q out of order or torn (want g%d line %04d)", line, g, next[g])
		}
		next[g]++
		n++
	}
	if n != writers*lines {
		t.Errorf("%d lines, want %d", n, writers*lines)
	}
}

func TestHandlerFlushesAboveInfo(t *testing.T) {
	s := &sink{}
	w := logbatch.NewWriter(s, never, 0)
	log := slog.New(logbatch.NewHandler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}), w))
	log.Info("request", "n", 1)
	log.Debug("detail")
	if got := s.got(); len(got) != 0 {
		t.Fatalf("info and debug lines written at once: %q", got)
	}
	log.With("room", "proxy").Warn("upstream down")
	got := s.got()
	if len(got) != 1 {
		t.Fatalf("writes = %q, want one write with the held lines and the warning", got)
	}
	lines := strings.Split(strings.TrimSuffix(got[0], "\n"), "\n")
	want := []string{"msg=request", "msg=detail", "msg=\"upstream down\" room=proxy"}
	if len(lines) != len(want) {
		t.Fatalf("lines = %q", lines)
	}
	for i := range want {
		if !strings.Contains(lines[i], want[i]) {
			t.Errorf("line %d = %q, want it to hold %q", i, lines[i], want[i])
		}
	}
	log.WithGroup("g").Error("failed")
	if got := s.got(); len(got) != 2 {
		t.Errorf("an error line was held: %q", got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestCloseKeepsOrder: a line written while Close runs goes out after the
// lines held before it, never ahead of them.
func TestCloseKeepsOrder(t *testing.T) {
	for i := range 5000 {
		s := &sink{}
		w := logbatch.NewWriter(s, never, 0)
		w.Write([]byte("held\n"))
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; w.Close() })
		for range 4 {
			wg.Go(func() {
				<-start
				for range 20 {
					w.Write([]byte("late\n"))
				}
			})
		}
		close(start)
		wg.Wait()
		if got := s.got(); len(got) == 0 || !strings.HasPrefix(got[0], "held\n") {
			t.Fatalf("run %d: the first write was %q, want the held line first", i, got[:min(len(got), 1)])
		}
	}
}
