// Package httpserve runs khproxy's HTTP listeners (the signing proxy, the
// emulator, and whatever else a command serves) with one set of server
// timeouts and one shutdown sequence, so that every listener starts and stops
// the same way.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is one listener and the handler that answers on it.
type Server struct {
	// Name names the server in log lines and errors, e.g. "proxy".
	Name string
	// Listener is served until shutdown, then closed. Required.
	Listener net.Listener
	// Handler answers every request. Required.
	Handler http.Handler
	// ReadTimeout bounds reading one whole request, body included; 0 means
	// no bound beyond the header timeout.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response; 0 means none.
	WriteTimeout time.Duration
}

// Timeouts every server gets.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Options configures Serve. The zero value is usable.
type Options struct {
	// Grace bounds how long shutdown waits for in-flight requests, for all
	// servers together; 0 means DefaultGrace.
	Grace time.Duration
	// BeforeShutdown, when set, is called once ctx is done and before the
	// first server stops accepting, e.g. to end injected delays.
	BeforeShutdown func()
	// Logger receives start, stop and server errors; nil discards them.
	Logger *slog.Logger
}

// DefaultGrace fits inside Kubernetes' default 30 s termination grace period.
const DefaultGrace = 25 * time.Second

// Serve serves every server until ctx is done, then shuts them down in the
// order given, each waiting for its in-flight requests within one shared
// grace period. It returns nil after a clean shutdown, and an error naming
// the server when one fails to serve (the others are then shut down too) or
// does not finish within the grace period (its remaining connections are
// closed).
func Serve(ctx context.Context, opts Options, servers ...Server) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	grace := opts.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	type result struct {
		name string
		err  error
	}
	errc := make(chan result, len(servers))
	https := make([]*http.Server, len(servers))
	for i, s := range servers {
		srv := &http.Server{
			Handler:           s.Handler,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       s.ReadTimeout,
			WriteTimeout:      s.WriteTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler().WithAttrs([]slog.Attr{slog.String("server", s.Name)}), slog.LevelWarn),
		}
		https[i] = srv
		go func() { errc <- result{s.Name, srv.Serve(s.Listener)} }()
	}

	var failed error
	select {
	case r := <-errc:
		failed = fmt.Errorf("%s: serve: %w", r.name, r.err)
	case <-ctx.Done():
	}
	if opts.BeforeShutdown != nil {
		opts.BeforeShutdown()
	}
	if failed == nil {
		log.Info("shutting down: finishing in-flight requests", "grace", grace)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	var errs []error
	for i, srv := range https {
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
			errs = append(errs, fmt.Errorf("%s: shutdown: %w", servers[i].Name, err))
		}
	}
	// Collect every Serve's return; the failed one was already received.
	n := len(servers)
	if failed != nil {
		n--
	}
	for range n {
		if r := <-errc; !errors.Is(r.err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("%s: serve: %w", r.name, r.err))
		}
	}
	if failed != nil {
		return errors.Join(append([]error{failed}, errs...)...)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	log.Info("stopped")
	return nil
}
