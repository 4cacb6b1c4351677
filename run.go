package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"khproxy/admin"
	"khproxy/browserguard"
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
		logw, closeLog := batchedLog(stderr)
		defer closeLog()
		cfg, log, err := load(environ, logw)
		if err != nil {
			lc := startupLogging(environ)
			return logFatal(newLogger(logw, lc), jsonLog(logw, lc), err)
		}
		applyMemLimit(os.DirFS("/"), environ, log)
		if err := serve(ctx, cfg, log, nil); err != nil {
			return logFatal(log, jsonLog(logw, cfg.Logging), err)
		}
		return nil
	case "demo":
		return demo(ctx, args, environ, stdout, stderr)
	case "check":
		return check(ctx, args, environ, stdout)
	case "audit":
		return auditCmd(args, stdout)
	case "emulator":
		lc, err := config.LoadLogging(environ)
		if err != nil {
			return fmt.Errorf("configuration:\n%w", err)
		}
		log := newLogger(stderr, lc)
		return emulator.Run(ctx, args, func(k string) string { return lookup(environ, k) }, stdout, log)
	case "version", "-version", "--version":
		printVersion(stdout)
		return nil
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	default:
		usage(stderr)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

// loggedError is an error that run has already written to the log as one
// line; main adds nothing to it but the exit code.
type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

// logFatal writes err, which ends khproxy, as one ERROR line when the log
// is JSON, so that a log pipeline reads every line, and marks it logged.
// A text log (a person at a terminal) gets main's plain message instead,
// whose lines the configuration's errors keep.
func logFatal(log *slog.Logger, json bool, err error) error {
	if !json {
		return err
	}
	log.Error("khproxy cannot run", "error", err.Error())
	return loggedError{err}
}

// startupLogging is the logging configuration for a configuration that did
// not load: its logging settings when they are valid, else the defaults
// (JSON unless stderr is a terminal).
func startupLogging(environ []string) config.Logging {
	lc, err := config.LoadLogging(environ)
	if err != nil {
		return config.Logging{LogLevel: slog.LevelInfo, LogFormat: "auto"}
	}
	return lc
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

// listening is what serve reports once its listeners accept requests.
type listening struct {
	proxy   string // the signing listener's address
	webhook string // the webhook listener's address; "" when it is off
}

// serve runs the proxy, and the webhook receiver when configured, until ctx
// is done. ready, when not nil, is called with the listening addresses once
// requests are accepted.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(listening)) error {
	// One registry for every room's metrics; the admin listener serves it.
	reg := admin.NewRegistry()
	metrics, err := admin.NewMetrics(reg, buildVersion())
	if err != nil {
		return err
	}
	secret, err := secretSource(cfg, log)
	if err != nil {
		return err
	}
	countReloads(secret, metrics)
	rl, err := newRateLimiting(cfg, log, reg)
	if err != nil {
		return err
	}
	defer rl.close()
	opts := proxyOptions(cfg, secret, log)
	opts.Metrics = metrics
	rl.apply(&opts)
	gates, closeGates, err := newGates(cfg, log, reg, opts.Signer, rl)
	if err != nil {
		return err
	}
	defer closeGates()
	opts.Gates = gates
	p, err := proxy.New(opts)
	if err != nil {
		return err
	}
	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	// The webhook listener gets the same limits on slow clients and
	// connections; the proxy's own answers and in-doubt log are its alone.
	servers := []httpserve.Server{{Name: "proxy", Listener: ln, Handler: p,
		ReadTimeout: cfg.ReadTimeout, MaxConns: cfg.MaxConns}}
	hook, err := webhookServer(cfg, log, servers[0], reg)
	if err != nil {
		ln.Close()
		return err
	}
	servers[0].Refuse = p.Refuse
	servers[0].Stopping = p.StopReceiving
	servers[0].BeforeClose = func() { metrics.RequestsInDoubt(p.LogInDoubt()) }
	addrs := listening{proxy: ln.Addr().String()}
	if hook != nil {
		servers = append(servers, *hook)
		addrs.webhook = hook.Listener.Addr().String()
	}
	ops, err := newOpsServer(cfg, reg, log, secretChecks(secret)...)
	if err != nil {
		for _, s := range servers {
			s.Listener.Close()
		}
		return err
	}
	warnOpenFileLimit(log, cfg.MaxConns, len(servers), ops.openConns())
	log.Info("khproxy listening", "addr", addrs.proxy, "upstream", config.RedactURL(cfg.Upstream), "key", cfg.Key, "version", buildVersion())
	if ready != nil {
		ready(addrs)
	}
	return ops.serve(ctx, servers...)
}

// proxyOptions copies the configuration into the proxy's options.
func proxyOptions(cfg config.Config, secret signer.SecretSource, log *slog.Logger) proxy.Options {
	return proxy.Options{
		Upstream:            cfg.Upstream,
		UpstreamCAs:         cfg.UpstreamCAs,
		Signer:              &signer.Signer{Key: cfg.Key, Secret: secret},
		SignFullPath:        cfg.SignedPath == config.SignedPathFull,
		MaxBodyBytes:        cfg.MaxBodyBytes,
		UpstreamTimeout:     cfg.UpstreamTimeout,
		IdempotentRoutes:    cfg.IdempotentRoutes,
		RetryMax:            cfg.RetryMax,
		RetryBudget:         cfg.RetryBudget,
		IdempotencyWindow:   cfg.IdempotencyWindow,
		MaxInflightBytes:    cfg.MaxInflightBytes,
		BudgetWait:          cfg.MaxInflightWait,
		UpstreamIdleTimeout: cfg.UpstreamIdleTimeout,
		Callers: browserguard.New(browserguard.Options{
			AllowedOrigins: cfg.AllowedOrigins,
			AllowedHosts:   cfg.AnsweredHosts(),
		}),
		Logger: log,
	}
}

// secretSource returns the configured API secret, judged by package
// signer's rule; a secret file is read here, once, and again whenever it
// changes.
func secretSource(cfg config.Config, log *slog.Logger) (signer.SecretSource, error) {
	return loadSecret(cfg.Secret, cfg.SecretFile, "KH_SECRET", "signing", log)
}

// loadSecret returns secret, or the rotating content of file when that is
// set; name is the secret's variable (the file's is name+"_FILE") and use
// what the secret is for, both for messages.
func loadSecret(secret, file, name, use string, log *slog.Logger) (signer.SecretSource, error) {
	if file == "" {
		if err := signer.ValidateSecret([]byte(secret)); err != nil {
			return nil, fmt.Errorf("configuration:\n%s: %w", name, err)
		}
		return signer.StaticSecret(secret), nil
	}
	fs, err := signer.NewFileSecret(file)
	if err != nil {
		return nil, fmt.Errorf("configuration:\n%s_FILE: %w", name, err)
	}
	fs.OnChange = func(err error) {
		if err != nil {
			log.Warn("secret file unusable; "+use+" with the last good secret", "var", name+"_FILE", "error", err)
			return
		}
		log.Info("secret file changed; "+use+" with the new secret", "var", name+"_FILE")
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
