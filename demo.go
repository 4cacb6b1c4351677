package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"khproxy/config"
	"khproxy/emulator"
	"khproxy/internal/httpserve"
)

// demo runs the real proxy in front of an in-process API emulator with
// credentials generated for this run, and prints curl commands to try.
func demo(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: demo takes no arguments; set KH_LISTEN to move it", errUsage)
	}
	dc, err := config.LoadDemo(environ)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	// A throwaway key of this run's emulator, never the user's own: the
	// banner prints its secret.
	key, secret, err := emulator.NewCredentials()
	if err != nil {
		return fmt.Errorf("demo: credentials: %w", err)
	}
	ln, err := net.Listen("tcp", dc.EmulatorListen)
	if err != nil {
		return fmt.Errorf("demo: emulator listener (KH_EMULATOR_LISTEN=%s): %w", dc.EmulatorListen, err)
	}
	upstream := "http://" + ln.Addr().String() + emulator.DefaultBasePath
	hooks, err := newDemoWebhooks(environ, stdout)
	if err != nil {
		ln.Close()
		return err
	}

	// The proxy is configured exactly as in production, through the
	// environment, with the credentials and upstream of this run.
	// Locally, the admin listener goes on a free loopback port (its log
	// line names it) and Ctrl-C stops at once; both can be set as usual.
	env := append([]string{"KH_KEY=" + key, "KH_SECRET=" + secret, "KH_UPSTREAM=" + upstream,
		"KH_ADMIN_LISTEN=127.0.0.1:0", "KH_SHUTDOWN_DELAY=0s"}, hooks.env()...)
	for _, kv := range environ {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "KH_KEY", "KH_KEY_FILE", "KH_SECRET", "KH_SECRET_FILE", "KH_UPSTREAM", "KH_WEBHOOK_SECRET", "KH_WEBHOOK_SECRET_FILE":
		default:
			env = append(env, kv)
		}
	}
	cfg, log, err := load(env, stderr)
	if err != nil {
		ln.Close()
		hooks.close()
		return err
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("the demo's emulator listens on a non-loopback address: anyone who reaches it can use its unauthenticated control endpoint", "var", "KH_EMULATOR_LISTEN", "addr", ln.Addr().String())
	}
	// A new real key is read-only (spec §4.2); the demo asks for every
	// scope so that every suggested command works, and its banner says so.
	// Orders go through the emulator's lifecycle with its command line's
	// short delays, so that pending, paid, provisioning and active show.
	opts := emulator.Options{
		Keys:           []emulator.Key{{ID: key, Secret: secret, Scopes: emulator.AllScopes()}},
		Lifecycle:      demoLifecycle,
		SignedPath:     string(cfg.SignedPath), // the form the proxy signs (KH_SIGNED_PATH)
		WebhookRetries: demoRetries,
		Logger:         log.With("component", "emulator"),
	}
	hooks.emulatorOptions(&opts, cfg.WebhookSignatureHeader)
	emu, err := emulator.New(opts)
	if err != nil {
		ln.Close()
		hooks.close()
		return fmt.Errorf("demo: %w", err)
	}
	defer emu.Close()

	// The emulator stops after the proxy, so that requests the proxy is
	// finishing still have their upstream.
	emuCtx, stopEmu := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEmu()
	emuDone := make(chan error, 1)
	go func() {
		emuDone <- httpserve.Serve(emuCtx, httpserve.Options{Logger: log.With("component", "emulator"), BeforeShutdown: func() { _ = emu.Close() }},
			append([]httpserve.Server{{Name: "emulator", Listener: ln, Handler: emu}}, hooks.servers()...)...)
	}()

	err = serve(ctx, cfg, log, func(l listening) {
		banner(stdout, demoInfo{proxy: l.proxy, emulator: ln.Addr().String(), upstream: upstream, key: key, secret: secret,
			retries: demoRetries, fullPath: cfg.SignedPath == config.SignedPathFull}, hooks.start(l, upstream, key, secret, cfg, log))
	})
	stopEmu()
	return errors.Join(err, <-emuDone)
}

// demoLifecycle is the demo emulator's timing: the defaults of `khproxy
// emulator`, which are the emulator's choice, not the API's (the spec
// documents no timings).
var demoLifecycle = emulator.Lifecycle{
	PaymentDelay:   emulator.DefaultPaymentDelay,
	ProvisionDelay: emulator.DefaultProvisionDelay,
	ActionDelay:    emulator.DefaultActionDelay,
}

// demoRetries are the waits before each retry of a failed webhook delivery
// in the demo: short, for a local receiver (khproxy emulator's default is
// a production-like schedule of hours).
var demoRetries = emulator.FastWebhookRetries()

// demoInfo is what the banner tells: the addresses and the demo's throwaway
// credentials.
type demoInfo struct {
	proxy, emulator, upstream string
	key, secret               string
	retries                   []time.Duration
	fullPath                  bool // KH_SIGNED_PATH=full: the emulator verifies the full path too
}

// banner tells what runs where and what to try; webhooks is its paragraph
// on webhooks.
func banner(w io.Writer, d demoInfo, webhooks string) {
	base := "http://" + d.proxy
	l := demoLifecycle
	signedPath := ""
	if d.fullPath {
		signedPath = "  export KH_SIGNED_PATH=full\n"
	}
	fmt.Fprintf(w, `
khproxy demo: the signing proxy listens on %[1]s, in front of a local
KernelHost API emulator at %[2]s with a key generated for this run.
The key has all scopes, asked for explicitly: a new real key is read-only
until you enable write scopes in the portal. Send plain HTTP; khproxy
signs it. Try:

  curl -s %[1]s/v1/products/42
  curl -s -X POST %[1]s/v1/orders -H 'Content-Type: application/json' \
       -d '{"product_id":42,"billing_cycle":"monthly"}' -D -
  curl -s %[1]s/v1/orders/1001
  curl -s %[1]s/v1/services/5001
  curl -s %[1]s/v1/billing/balance
  curl -s %[1]s/v1/billing/invoices/9001/pdf -o invoice.pdf

Timings are the emulator's, not the API's (the API documents none): an
order is answered 201 "pending"; %[3]s later it is "paid" (order.paid,
invoice.created) and its service 5001 is "provisioning"; %[4]s after that
the service is "active" (service.provisioned). start, stop, reboot and
reinstall answer 202 "pending" and complete after %[5]s. A failed webhook
delivery is retried after %[6]s.

To sign requests yourself or run khproxy check against this emulator,
use this run's throwaway emulator key (its secret is printed because it
is worthless outside this run; never print a real one):

  export KH_KEY=%[7]s
  export KH_SECRET=%[8]s
  export KH_UPSTREAM=%[9]s
%[12]s  khproxy check        # or: go run . check

The emulator's control endpoint (faults, keys, lifecycle; see docs/emulator.md),
on the emulator's address (KH_EMULATOR_LISTEN sets it):
%[10]s

%[11]sCtrl-C stops it.

`, base, d.upstream, l.PaymentDelay, l.ProvisionDelay, l.ActionDelay, joinDurations(d.retries),
		d.key, d.secret, d.upstream, "http://"+d.emulator+emulator.ControlPath, webhooks, signedPath)
}

// joinDurations writes waits as "100ms, 300ms and 1s".
func joinDurations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no wait (one attempt only)"
	}
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}
