// Package logbatch writes log lines in batches. A busy proxy writes one
// access-log line per request, and one write(2) each to a pipe (a
// container's stderr) costs more than formatting the line and wakes the
// reader every time. Here routine lines are held for at most a short delay
// and go out together, in order; a line that matters at once (a warning or
// an error) goes out at once, after whatever was held.
package logbatch

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Defaults for NewWriter's delay and size.
const (
	DefaultDelay = 20 * time.Millisecond
	DefaultSize  = 64 << 10
)

// Writer holds what is written to it and passes it on to an underlying
// writer, in order, in one write: at most delay after the first held byte,
// at once when size bytes are held, or on Flush. Nothing is dropped: a
// Write that fills the batch waits for the underlying write. After Close,
// every Write goes straight through.
//
// Create one with NewWriter; the zero value is not usable. Safe for
// concurrent use; each Write is written whole, never interleaved with
// another.
type Writer struct {
	w     io.Writer
	delay time.Duration
	size  int

	writing sync.Mutex // held while writing to w: keeps batches in order

	mu        sync.Mutex // guards the fields below
	held      []byte
	spare     []byte
	scheduled bool // the timer will flush what is held
	closed    bool
	err       error // the first error from w
	timer     *time.Timer
}

// NewWriter returns a Writer to w that holds lines for at most delay and at
// most size bytes; zero values mean DefaultDelay and DefaultSize.
func NewWriter(w io.Writer, delay time.Duration, size int) *Writer {
	if delay <= 0 {
		delay = DefaultDelay
	}
	if size <= 0 {
		size = DefaultSize
	}
	b := &Writer{w: w, delay: delay, size: size}
	b.timer = time.AfterFunc(time.Hour, func() { b.Flush() })
	b.timer.Stop()
	return b
}

// Write holds p for the next batch. It reports an error only after Close,
// from the underlying writer.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.writing.Lock()
		defer b.writing.Unlock()
		return b.w.Write(p)
	}
	b.held = append(b.held, p...)
	full := len(b.held) >= b.size
	if !full && !b.scheduled {
		b.scheduled = true
		b.timer.Reset(b.delay)
	}
	b.mu.Unlock()
	if full {
		b.Flush()
	}
	return len(p), nil
}

// Flush writes everything held so far, and returns once it is written. It
// returns the first error the underlying writer ever gave.
func (b *Writer) Flush() error {
	b.writing.Lock()
	defer b.writing.Unlock()
	return b.flushLocked(false)
}

// flushLocked is Flush with b.writing held. With close it also closes b, in
// the same step that takes the batch: a Write that finds b closed and goes
// straight through then waits for b.writing, after the held lines.
func (b *Writer) flushLocked(close bool) error {
	b.mu.Lock()
	if close {
		b.closed = true
		b.timer.Stop()
	}
	batch := b.held
	b.held, b.spare = b.spare[:0], nil
	b.scheduled = false
	b.mu.Unlock()
	var err error
	if len(batch) > 0 {
		_, err = b.w.Write(batch)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if cap(batch) <= 4*b.size {
		b.spare = batch[:0]
	}
	if b.err == nil {
		b.err = err
	}
	return b.err
}

// Close writes what is held and makes every later Write go straight
// through. It returns the first error the underlying writer gave.
func (b *Writer) Close() error {
	b.writing.Lock()
	defer b.writing.Unlock()
	return b.flushLocked(true)
}

// Handler is a slog.Handler whose records are written through a Writer:
// those above Info, the level of routine lines such as the access log,
// are flushed at once, with whatever was held before them.
//
// Create one with NewHandler; the zero value is not usable. Safe for
// concurrent use.
type Handler struct {
	inner slog.Handler
	w     *Writer
}

// NewHandler returns a Handler that passes records to inner, which must
// write to w, and flushes w after each record above Info.
func NewHandler(inner slog.Handler, w *Writer) *Handler {
	return &Handler{inner: inner, w: w}
}

// Enabled reports whether the inner handler handles level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle passes r on, and flushes when r is above Info.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.inner.Handle(ctx, r)
	if r.Level > slog.LevelInfo {
		h.w.Flush()
	}
	return err
}

// WithAttrs returns a Handler over the inner handler's WithAttrs.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs), w: h.w}
}

// WithGroup returns a Handler over the inner handler's WithGroup.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), w: h.w}
}
