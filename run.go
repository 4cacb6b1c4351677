package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"khproxy/config"
	"khproxy/emulator"
	"khproxy/internal/httpserve"
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
		lc, err := config.LoadLogging(environ)
		if err != nil {
			return fmt.Errorf("configuration:\n%w", err)
		}
		log := newLogger(stderr, lc)
		return emulator.Run(ctx, args, func(k string) string { return lookup(environ, k) }, stdout, log)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	default:
		usage(stderr)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

// load reads the configuration and builds the one logger.
func load(environ []string, stderr io.Writer) (config.Config, *slog.Logger, error) {
	cfg, warnings, err := config.Load(environ)
	if err != nil {
		return config.Config{}, nil, fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(stderr, cfg.Logging)
	for _, w := range warnings {
		log.Warn(w.Message, "var", w.Var)
	}
	return cfg, log, nil
}

// serve runs the proxy until ctx is done. ready, when not nil, is called
// with the listening address once requests are accepted.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(addr string)) error {
	secret, err := secretSource(cfg, log)
	if err != nil {
		return err
	}
	p, err := proxy.New(proxyOptions(cfg, secret, log))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("KH_LISTEN: %w", err)
	}
	log.Info("khproxy listening", "addr", ln.Addr().String(), "upstream", cfg.Upstream.Redacted(), "key", cfg.Key)
	if ready != nil {
		ready(ln.Addr().String())
	}
	return httpserve.Serve(ctx, httpserve.Options{Logger: log},
		httpserve.Server{Name: "proxy", Listener: ln, Handler: p})
}

// proxyOptions copies the configuration into the proxy's options.
func proxyOptions(cfg config.Config, secret signer.SecretSource, log *slog.Logger) proxy.Options {
	routes := make([]proxy.Route, len(cfg.IdempotentRoutes))
	for i, r := range cfg.IdempotentRoutes {
		routes[i] = proxy.Route{Method: r.Method, Path: r.Path}
	}
	return proxy.Options{
		Upstream:          cfg.Upstream,
		UpstreamCAs:       cfg.UpstreamCAs,
		Signer:            &signer.Signer{Key: cfg.Key, Secret: secret},
		MaxBodyBytes:      cfg.MaxBodyBytes,
		UpstreamTimeout:   cfg.UpstreamTimeout,
		IdempotentRoutes:  routes,
		RetryMax:          cfg.RetryMax,
		RetryBudget:       cfg.RetryBudget,
		IdempotencyWindow: cfg.IdempotencyWindow,
		Logger:            log,
	}
}

// secretSource returns the configured secret, judged by package signer's
// rule; a secret file is read here, once, and again whenever it changes.
func secretSource(cfg config.Config, log *slog.Logger) (signer.SecretSource, error) {
	if cfg.SecretFile == "" {
		if err := signer.ValidateSecret([]byte(cfg.Secret)); err != nil {
			return nil, fmt.Errorf("configuration:\nKH_SECRET: %w", err)
		}
		return signer.StaticSecret(cfg.Secret), nil
	}
	fs, err := signer.NewFileSecret(cfg.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("configuration:\nKH_SECRET_FILE: %w", err)
	}
	fs.OnChange = func(err error) {
		if err != nil {
			log.Warn("secret file unusable; signing with the last good secret", "var", "KH_SECRET_FILE", "error", err)
			return
		}
		log.Info("secret file changed; signing with the new secret", "var", "KH_SECRET_FILE")
	}
	return fs, nil
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
