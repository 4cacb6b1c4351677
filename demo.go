package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"khproxy/emulator"
	"khproxy/internal/httpserve"
)

// demo runs the real proxy in front of an in-process API emulator with
// credentials generated for this run, and prints curl commands to try.
func demo(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: demo takes no arguments; set KH_LISTEN to move it", errUsage)
	}
	key, secret, err := emulator.NewCredentials()
	if err != nil {
		return fmt.Errorf("demo: credentials: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: emulator listener: %w", err)
	}
	upstream := "http://" + ln.Addr().String() + emulator.DefaultBasePath

	// The proxy is configured exactly as in production, through the
	// environment, with the credentials and upstream of this run.
	env := []string{"KH_KEY=" + key, "KH_SECRET=" + secret, "KH_UPSTREAM=" + upstream}
	for _, kv := range environ {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "KH_KEY", "KH_SECRET", "KH_SECRET_FILE", "KH_UPSTREAM":
		default:
			env = append(env, kv)
		}
	}
	cfg, log, err := load(env, stderr)
	if err != nil {
		ln.Close()
		return err
	}
	emu, err := emulator.New(emulator.Options{
		Keys:   []emulator.Key{{ID: key, Secret: secret, Scopes: emulator.AllScopes()}},
		Logger: log.With("component", "emulator"),
	})
	if err != nil {
		ln.Close()
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
			httpserve.Server{Name: "emulator", Listener: ln, Handler: emu})
	}()

	err = serve(ctx, cfg, log, func(addr string) { banner(stdout, addr, upstream) })
	stopEmu()
	return errors.Join(err, <-emuDone)
}

func banner(w io.Writer, addr, upstream string) {
	base := "http://" + addr
	fmt.Fprintf(w, `
khproxy demo: the signing proxy listens on %[1]s, in front of a local
KernelHost API emulator at %[2]s with a key generated for this run.
Send plain HTTP; khproxy signs it. Try:

  curl -s %[1]s/v1/products/42
  curl -s -X POST %[1]s/v1/orders -H 'Content-Type: application/json' \
       -d '{"product_id":42,"billing_cycle":"monthly"}' -D -
  curl -s %[1]s/v1/orders/1001
  curl -s %[1]s/v1/billing/balance
  curl -s %[1]s/v1/billing/invoices/9001/pdf -o invoice.pdf

Ctrl-C stops it.

`, base, upstream)
}
