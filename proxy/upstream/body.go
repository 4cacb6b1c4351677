package upstream

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// watchedBody is an upstream response body. A read may wait at most idle
// for the next bytes (time spent writing to a slow client does not count);
// closing the body releases the attempt's context; the first failure is
// noted in the Call (BodyErr).
type watchedBody struct {
	io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   time.Duration
	timer  *time.Timer
	call   *Call
	once   sync.Once
}

func (t *Transport) watch(ctx context.Context, cancel context.CancelCauseFunc, body io.ReadCloser, c *Call) io.ReadCloser {
	b := &watchedBody{ReadCloser: body, ctx: ctx, cancel: cancel, idle: t.idleTimeout, call: c}
	b.timer = time.AfterFunc(t.idleTimeout, func() { cancel(ErrBodyIdle) })
	b.timer.Stop()
	return b
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.idle)
	n, err := b.ReadCloser.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF {
		if errors.Is(context.Cause(b.ctx), ErrBodyIdle) {
			err = ErrBodyIdle
		}
		if b.call.BodyErr == nil {
			b.call.BodyErr = err
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.timer.Stop()
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.cancel(nil) })
	return err
}
