package proxy

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// errUpstreamIdle marks a response body that sent nothing for the idle
// timeout.
var errUpstreamIdle = errors.New("the upstream response body sent nothing within the idle timeout")

// watchedBody is an upstream response body. A read may wait at most idle
// for the next bytes (time spent writing to a slow client does not count);
// closing the body releases the attempt's context; the first failure is
// noted for the access log.
type watchedBody struct {
	io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   time.Duration
	timer  *time.Timer
	ex     *exchange
	once   sync.Once
}

func (t *signingTransport) watch(ctx context.Context, cancel context.CancelCauseFunc, body io.ReadCloser, ex *exchange) io.ReadCloser {
	b := &watchedBody{ReadCloser: body, ctx: ctx, cancel: cancel, idle: t.idleTimeout, ex: ex}
	b.timer = time.AfterFunc(t.idleTimeout, func() { cancel(errUpstreamIdle) })
	b.timer.Stop()
	return b
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.idle)
	n, err := b.ReadCloser.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF {
		if errors.Is(context.Cause(b.ctx), errUpstreamIdle) {
			err = errUpstreamIdle
		}
		if b.ex.upstreamErr == nil {
			b.ex.upstreamErr = err
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
