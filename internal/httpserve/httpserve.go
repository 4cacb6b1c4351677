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
	"slices"
	"sync"
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
	// no bound beyond the header timeout. A request whose headers are not
	// in within it (or 10s, if less) gets 408 and its connection is closed;
	// a handler reading a body past it gets an error wrapping
	// os.ErrDeadlineExceeded and answers itself.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response; 0 means none.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a connection waits, idle, for its next
	// request (keep-alive); 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxConns bounds the connections served at once; 0 means no bound.
	// At the bound, a new connection takes the place of the one idle
	// longest between requests, which is closed (a client reusing it at
	// that instant sees it closed, as it would at IdleTimeout). With none
	// idle, a few more at a time (1/16 of it, at least 8) have each
	// request answered 503 by Refuse and are then closed; beyond those,
	// new connections are closed at once.
	MaxConns int
	// Refuse writes the answer to a request the server refuses itself:
	// http.StatusServiceUnavailable on a connection over MaxConns, and
	// http.StatusRequestTimeout when a request's headers did not arrive in
	// time (r is nil then: there is no request to show). nil means a short
	// plain-text answer.
	Refuse func(w http.ResponseWriter, r *http.Request, status int)
	// Stopping, when set, is called when the server stops accepting, before
	// it waits for its in-flight requests, e.g. to cut the ones that have
	// not yet been received whole.
	Stopping func()
	// BeforeClose, when set, is called if the grace period runs out with
	// requests still in flight, just before their connections are closed.
	BeforeClose func()
	// Last keeps the server answering until every other server has shut
	// down, as an admin listener must, to report the shutdown to its
	// probes. Servers without it shut down together.
	Last bool
}

// Timeouts every server gets.
const (
	readHeaderTimeout = 10 * time.Second
	maxHeaderBytes    = 64 << 10
)

// DefaultIdleTimeout is a Server's keep-alive idle timeout when its
// IdleTimeout is 0: long enough for a client's next request in a burst,
// short enough that idle clients do not keep connection slots for long.
const DefaultIdleTimeout = 30 * time.Second

// Options configures Serve. The zero value is usable.
type Options struct {
	// Grace bounds how long shutdown waits for in-flight requests, for all
	// servers together; 0 means DefaultGrace.
	Grace time.Duration
	// BeforeShutdown, when set, is called once ctx is done, before Delay
	// and before the first server stops accepting, e.g. to fail a
	// readiness probe or to end injected delays.
	BeforeShutdown func()
	// Delay is how long every server goes on serving, new connections
	// included, once ctx is done and BeforeShutdown has run: the time a
	// load balancer (Kubernetes' endpoint removal) needs to stop sending
	// requests. A server that fails meanwhile ends it early. 0 means none.
	Delay time.Duration
	// Logger receives start, stop and server errors; nil discards them.
	Logger *slog.Logger
}

// DefaultGrace fits inside Kubernetes' default 30 s termination grace period.
const DefaultGrace = 25 * time.Second

// Serve serves every server until ctx is done, waits Options.Delay, then
// shuts them down: all together, then those marked Last, each waiting for its
// in-flight requests within one shared grace period. It returns nil after a
// clean shutdown, and an error naming the server when one fails to serve
// (the others are then shut down too) or does not finish within the grace
// period (its remaining connections are closed).
func Serve(ctx context.Context, opts Options, servers ...Server) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	grace := opts.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	errc := make(chan result, len(servers))
	https := make([]*http.Server, len(servers))
	for i, s := range servers {
		srv, ln := newServer(s, log)
		https[i] = srv
		go func() { errc <- result{s.Name, srv.Serve(ln)} }()
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
	if failed == nil && opts.Delay > 0 {
		log.Info("shutting down: serving on while clients learn of it", "delay", opts.Delay)
		failed = wait(opts.Delay, errc)
	}
	if failed == nil {
		log.Info("shutting down: finishing in-flight requests", "grace", grace)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	var errs []error
	for _, last := range []bool{false, true} {
		errs = append(errs, shutdown(sctx, servers, https, last)...)
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

// ErrGraceExpired is wrapped by the error of a server whose in-flight
// requests had not finished when the grace period ran out, and were cut.
var ErrGraceExpired = errors.New("the grace period ran out with requests in flight")

// OnlyGraceExpired reports whether err, as Serve returns it, says nothing
// but that requests were cut when the grace period ran out: every server
// served and stopped accepting as asked.
func OnlyGraceExpired(err error) bool {
	if err == nil {
		return false
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return errors.Is(err, ErrGraceExpired)
	}
	for _, e := range j.Unwrap() {
		if !errors.Is(e, ErrGraceExpired) {
			return false
		}
	}
	return true
}

// shutdown shuts down together every server whose Last is last, and
// returns their errors in the servers' order.
func shutdown(ctx context.Context, servers []Server, https []*http.Server, last bool) []error {
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range https {
		s := servers[i]
		if s.Last != last {
			continue
		}
		wg.Go(func() {
			if s.Stopping != nil {
				s.Stopping()
			}
			if err := srv.Shutdown(ctx); err != nil {
				if s.BeforeClose != nil {
					s.BeforeClose()
				}
				_ = srv.Close()
				errs[i] = fmt.Errorf("%s: shutdown: %w: %w", s.Name, ErrGraceExpired, err)
			}
		})
	}
	wg.Wait()
	return slices.DeleteFunc(errs, func(err error) bool { return err == nil })
}

// newServer builds the http.Server for s, and the listener it serves:
// s.Listener with connections counted and watched.
func newServer(s Server, log *slog.Logger) (*http.Server, net.Listener) {
	refuse := s.Refuse
	if refuse == nil {
		refuse = plainRefuse
	}
	headerTimeout := readHeaderTimeout
	if s.ReadTimeout > 0 {
		headerTimeout = min(headerTimeout, s.ReadTimeout)
	}
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	handler := s.Handler
	if s.MaxConns > 0 {
		handler = refuseOverLimit(handler, refuse)
	}
	ln := &limitListener{
		Listener: s.Listener,
		max:      s.MaxConns,
		extra:    overLimitConns(s.MaxConns),
		timeout:  rawResponse(refuse, http.StatusRequestTimeout),
		log:      log.With("server", s.Name),
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         trackState,
		ConnContext:       markOverLimit,
		ErrorLog:          slog.NewLogLogger(log.Handler().WithAttrs([]slog.Attr{slog.String("server", s.Name)}), slog.LevelWarn),
	}
	return srv, ln
}

// result is what one server's Serve returned.
type result struct {
	name string
	err  error
}

// wait waits d, or less when a server fails meanwhile, and returns the
// failure.
func wait(d time.Duration, errc <-chan result) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-errc:
		return fmt.Errorf("%s: serve: %w", r.name, r.err)
	case <-t.C:
		return nil
	}
}
