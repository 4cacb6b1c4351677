package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"khproxy/admin"
	"khproxy/config"
	"khproxy/internal/httpserve"
	"khproxy/proxy"
	"khproxy/signer"
)

// The admin listener's bounds: probes and scrapes are few, small and
// quick, and the listener may be reachable from the whole pod network, so
// it gets few connections and a short keep-alive, whatever KH_MAX_CONNS
// says; the open-file check counts them.
const (
	adminMaxConns    = 16
	adminIdleTimeout = 5 * time.Second
	adminReadTimeout = 5 * time.Second
)

// opsServer is the admin listener (probes and metrics), the background
// check of the API's health, and the shutdown sequence around the proxy.
type opsServer struct {
	cfg    config.Ops
	log    *slog.Logger
	admin  *admin.Admin
	poller *admin.Poller // nil when the admin listener is off
	ln     net.Listener  // nil when the admin listener is off
}

// newOpsServer binds the admin listener, unless KH_ADMIN_LISTEN is empty.
// reg is the registry /metrics serves; checks are readiness conditions of
// khproxy's own (the secret file's, say).
//
// The API's health is polled (KH_UPSTREAM_CHECK_INTERVAL) into the
// khproxy_upstream_up gauge and never into /readyz: as a native sidecar,
// khproxy's readiness is the pod's, and an API outage (or a 429 from the
// API's per-IP limit) must not take every app pod out of its Service, stall
// rollouts and block drains. Apps see the API's own answers meanwhile.
func newOpsServer(cfg config.Config, reg *prometheus.Registry, log *slog.Logger, checks ...admin.Check) (*opsServer, error) {
	o := &opsServer{cfg: cfg.Ops, log: log, admin: admin.New(reg, checks...)}
	if cfg.AdminListen == "" {
		return o, nil
	}
	up, err := admin.NewUpstreamUp(reg)
	if err != nil {
		return nil, err
	}
	o.poller = admin.NewPoller("upstream API", admin.HTTPCheck{
		Client: &http.Client{Transport: proxy.NewTransport()},
		URL:    cfg.Upstream.JoinPath("v1", "health").String(),
	}, admin.PollOptions{Interval: cfg.UpstreamCheckInterval, Logger: log, Up: up})
	ln, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("KH_ADMIN_LISTEN: %w", err)
	}
	o.ln = ln
	log.Info("admin listener: /healthz, /readyz, /metrics", "addr", ln.Addr().String())
	return o, nil
}

// serve serves servers (the proxy first) and the admin listener until ctx
// is done, then fails readiness at once, serves on for KH_SHUTDOWN_DELAY,
// lets in-flight requests finish within KH_SHUTDOWN_TIMEOUT, and stops the
// admin listener last.
func (o *opsServer) serve(ctx context.Context, servers ...httpserve.Server) error {
	if o.ln != nil {
		servers = append(servers, httpserve.Server{Name: "admin", Listener: o.ln, Handler: o.admin.Handler(),
			ReadTimeout: adminReadTimeout, WriteTimeout: 30 * time.Second, IdleTimeout: adminIdleTimeout,
			MaxConns: adminMaxConns, Last: true})
		done := make(chan struct{})
		go func() {
			defer close(done)
			o.poller.Run(ctx)
		}()
		defer func() { <-done }()
	}
	o.admin.Started()
	err := httpserve.Serve(ctx, httpserve.Options{
		Logger:         o.log,
		Grace:          o.cfg.ShutdownTimeout,
		Delay:          o.cfg.ShutdownDelay,
		BeforeShutdown: o.admin.Stopping,
	}, servers...)
	// A shutdown that ran out of time did what was asked: the requests it
	// cut are logged as in doubt, one by one, and khproxy exits 0.
	if httpserve.OnlyGraceExpired(err) {
		o.log.Warn("stopped: KH_SHUTDOWN_TIMEOUT ran out and requests still in flight were cut", "error", err)
		return nil
	}
	return err
}

// openConns returns how many client connections the admin listener may
// hold open at once; 0 when it is off.
func (o *opsServer) openConns() int {
	if o.ln == nil {
		return 0
	}
	return httpserve.OpenConns(adminMaxConns)
}

// countReloads counts the changes of a secret file in the metrics, besides
// logging them.
func countReloads(secret signer.SecretSource, m *admin.Metrics) {
	f, ok := secret.(*signer.FileSecret)
	if !ok {
		return
	}
	logChange := f.OnChange
	f.OnChange = func(err error) {
		m.SecretReload(err)
		if logChange != nil {
			logChange(err)
		}
	}
}

// secretChecks makes a secret file that became unusable fail readiness:
// the API's old secret stops working at once on rotation, so the last good
// one, which khproxy goes on signing with, most likely no longer works.
// The probe looks at the file itself (Secret re-reads it at most once per
// signer.DefaultCheckEvery): FileSecret only notices a change when asked,
// and an unready replica behind a Service gets no request that would ask.
func secretChecks(secret signer.SecretSource) []admin.Check {
	f, ok := secret.(*signer.FileSecret)
	if !ok {
		return nil
	}
	return []admin.Check{admin.CheckFunc(func(context.Context) error {
		_, _ = f.Secret() // reads the file again if it changed; Err tells how that went
		if err := f.Err(); err != nil {
			return fmt.Errorf("KH_SECRET_FILE: %w", err)
		}
		return nil
	})}
}

// listen opens the signing listener: TCP, or a Unix socket for
// KH_LISTEN=unix:/path.
func listen(cfg config.Config) (net.Listener, error) {
	network, addr := cfg.ListenNetwork()
	if network == "unix" {
		ln, err := listenUnix(addr)
		if err != nil {
			return nil, fmt.Errorf("KH_LISTEN: %w", err)
		}
		return ln, nil
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("KH_LISTEN: %w", err)
	}
	return ln, nil
}

// socketMode lets the owner and the group (in a pod: the fsGroup that the
// containers sharing the volume run with) connect, and nobody else.
const socketMode fs.FileMode = 0o660

// listenUnix listens on a Unix socket at path with socketMode. A socket file
// left by a process that is gone is removed first; a live one, or a file
// that is not a socket, is an error. The file is removed when the listener
// is closed.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket; not removing it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("removing the stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Between bind and chmod the socket has the umask's mode; the
	// directory (a volume only the sharing containers mount) is the guard
	// meanwhile.
	if err := os.Chmod(path, socketMode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
