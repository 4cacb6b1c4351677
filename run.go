package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"

	"khproxy/config"
	"khproxy/emulator"
	"khproxy/proxy"
	"khproxy/signer"
)

// errUsage marks a command line that could not be understood; main exits 2.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// shutdownGrace is how long in-flight requests may take to finish after
// SIGTERM. Kubernetes' default termination grace period is 30s.
const shutdownGrace = 25 * time.Second

// run is khproxy's whole program: it reads the command line and environment,
// wires the pieces together and serves until ctx is done.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "":
		cfg, log, err := load(environ, stderr)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, log, nil)
	case "demo":
		return demo(ctx, args, environ, stdout, stderr)
	case "emulator":
		log := newLogger(stderr, lookup(environ, "KH_LOG_LEVEL"), orDefault(lookup(environ, "KH_LOG_FORMAT"), "auto"))
		return emulator.Run(ctx, args, func(k string) string { return lookup(environ, k) }, stdout, log)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	default:
		usage(stderr)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `khproxy signs requests for the KernelHost Reseller API: send it plain HTTP,
it adds KH-Key, KH-Timestamp, KH-Nonce, KH-Signature (and an Idempotency-Key
where the API needs one) and forwards the request upstream.

Usage:
  khproxy            run the proxy, configured by the environment below
  khproxy demo       run the proxy in front of a built-in API emulator:
                     no credentials needed (KH_LISTEN and KH_LOG_* apply)
  khproxy emulator   run the API emulator alone (khproxy emulator -h)
  khproxy -h         show this help

Environment:
`)
	for _, v := range config.Vars() {
		def := ""
		if v.Default != "" {
			def = " (default " + v.Default + ")"
		}
		fmt.Fprintf(w, "  %s%s\n      %s\n", v.Name, def, v.Help)
	}
}

// load reads the configuration and builds the one logger.
func load(environ []string, stderr io.Writer) (config.Config, *slog.Logger, error) {
	cfg, warnings, err := config.Load(environ)
	if err != nil {
		return config.Config{}, nil, fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	for _, w := range warnings {
		log.Warn(w.Message, "var", w.Var)
	}
	return cfg, log, nil
}

// serve runs the proxy until ctx is done. ready, when not nil, is called
// with the listening address once requests are accepted.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(addr string)) error {
	var secret signer.SecretSource = signer.StaticSecret(cfg.Secret)
	if cfg.SecretFile != "" {
		fs, err := signer.NewFileSecret(cfg.SecretFile)
		if err != nil {
			return fmt.Errorf("KH_SECRET_FILE: %w", err)
		}
		fs.OnChange = func(err error) {
			if err != nil {
				log.Warn("secret file unusable; signing with the last good secret", "var", "KH_SECRET_FILE", "error", err)
				return
			}
			log.Info("secret file changed; signing with the new secret", "var", "KH_SECRET_FILE")
		}
		secret = fs
	}
	upstream, err := url.Parse(cfg.Upstream)
	if err != nil {
		return fmt.Errorf("KH_UPSTREAM: %w", err)
	}
	routes := make([]proxy.Route, 0, len(cfg.IdempotentRoutes))
	for _, r := range cfg.IdempotentRoutes {
		method, path, err := config.SplitRoute(r)
		if err != nil {
			return fmt.Errorf("KH_IDEMPOTENT_ROUTES: %w", err)
		}
		routes = append(routes, proxy.Route{Method: method, Path: path})
	}
	roots, err := cfg.UpstreamRoots()
	if err != nil {
		return fmt.Errorf("KH_UPSTREAM_CA_FILE: %w", err)
	}
	p, err := proxy.New(proxy.Options{
		Upstream:          upstream,
		UpstreamRoots:     roots,
		Signer:            &signer.Signer{Key: cfg.Key, Secret: secret},
		MaxBodyBytes:      cfg.MaxBodyBytes,
		UpstreamTimeout:   cfg.UpstreamTimeout,
		IdempotentRoutes:  routes,
		RetryMax:          cfg.RetryMax,
		RetryBudget:       cfg.RetryBudget,
		IdempotencyWindow: cfg.IdemWindow,
		Logger:            log,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("KH_LISTEN: %w", err)
	}
	log.Info("khproxy listening", "addr", ln.Addr().String(), "upstream", cfg.Upstream, "key", cfg.Key)
	if ready != nil {
		ready(ln.Addr().String())
	}
	return serveHTTP(ctx, ln, p, log)
}

// serveHTTP serves h on ln until ctx is done, then lets in-flight requests
// finish for up to shutdownGrace.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newLogger builds the one logger: coloured text (tint) on a terminal, JSON
// otherwise, unless format forces one.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.Replace(strings.ToLower(level), "warning", "warn", 1))); err != nil {
		lv = slog.LevelInfo
	}
	tty := isTerminal(w)
	if format == "json" || (format == "auto" && !tty) {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv}))
	}
	return slog.New(tint.NewHandler(w, &tint.Options{Level: lv, TimeFormat: time.TimeOnly, NoColor: !tty}))
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// lookup returns the last value of key in environ, "" when absent.
func lookup(environ []string, key string) string {
	v := ""
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
