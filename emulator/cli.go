package emulator

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"khproxy/internal/httpserve"
)

var moneyPattern = regexp.MustCompile(`^([0-9]{1,12})(?:\.([0-9]{1,2}))?$`)

// parseMoney parses "500", "500.5" or "500.50" into minor units.
func parseMoney(s string) (int64, error) {
	m := moneyPattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid amount %q (want e.g. 500 or 12.50)", s)
	}
	whole, _ := strconv.ParseInt(m[1], 10, 64)
	frac := int64(0)
	if m[2] != "" {
		frac, _ = strconv.ParseInt((m[2] + "0")[:2], 10, 64)
	}
	return whole*100 + frac, nil
}

// Run runs the emulator as a standalone server (the "khproxy emulator"
// subcommand) until ctx is done, then shuts down gracefully and returns
// nil. args are the arguments after the subcommand; getenv supplies
// KH_KEY, KH_SECRET and KH_WEBHOOK_SECRET as fallbacks for the flags. When
// neither -key/-secret nor the environment provide credentials, fresh ones
// are generated and printed once to stdout as export lines. Run prints
// "listening on http://ADDR" with the actual bound address (so -listen
// 127.0.0.1:0 works). -h prints usage to stdout and returns nil. Bad flags
// or values return an error.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	fs := flag.NewFlagSet("khproxy emulator", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, and printed once by the caller
	listen := fs.String("listen", "127.0.0.1:8081", "address to listen on (keep it on loopback unless you mean otherwise)")
	key := fs.String("key", "", "API key id kh_live_[A-Z0-9]{32} (env KH_KEY; generated if neither key nor secret is set)")
	secret := fs.String("secret", "", "API secret (env KH_SECRET)")
	scopes := fs.String("scopes", strings.Join(allScopes, ","), "comma-separated scopes of the key")
	basePath := fs.String("base-path", DefaultBasePath, `path prefix before /v1 ("/" for none)`)
	perMinute := fs.Int("rate-per-minute", DefaultRatePerMinute, "per-key requests per minute (0: the default; see -no-rate-limit)")
	burst := fs.Int("burst", DefaultBurst, "per-key burst (0: the default)")
	perDay := fs.Int("rate-per-day", DefaultRatePerDay, "per-key requests per day (0: the default)")
	noLimit := fs.Bool("no-rate-limit", false, "disable all rate limits")
	balance := fs.String("balance", money(DefaultInitialBalance), "initial credit balance, e.g. 500 or 12.50 (0 for none)")
	hookSecret := fs.String("webhook-secret", "", "webhook signing secret (env KH_WEBHOOK_SECRET; generated and printed if empty)")
	hookHeader := fs.String("webhook-header", DefaultWebhookHeader, "webhook signature header name")
	insecure := fs.Bool("allow-insecure-webhooks", false, "allow http:// and loopback/private webhook URLs (local testing)")
	var f Faults
	fs.IntVar(&f.DropAfterCommit, "drop-after-commit", 0, "fault: drop the connection after the next N committed writes")
	fs.DurationVar(&f.Delay, "delay", 0, "fault: delay answers by this duration")
	fs.IntVar(&f.DelayCount, "delay-count", 0, "fault: delay only the next N requests (0: all)")
	fs.IntVar(&f.FailCount, "fail-count", 0, "fault: answer the next N requests with -fail-status")
	fs.IntVar(&f.FailStatus, "fail-status", 503, "fault: status for -fail-count (429 or 5xx)")
	fs.DurationVar(&f.RetryAfter, "retry-after", 0, "fault: Retry-After for injected 429/5xx")
	fs.DurationVar(&f.ClockOffset, "clock-offset", 0, "fault: run the server clock with this offset")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: khproxy emulator [flags]\n\nRuns the KernelHost Reseller API emulator alone.\n\nFlags:")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("emulator: %w (khproxy emulator -h lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("emulator: unexpected arguments: %q", fs.Args())
	}
	if *key == "" {
		*key = getenv("KH_KEY")
	}
	if *secret == "" {
		*secret = getenv("KH_SECRET")
	}
	if *hookSecret == "" {
		*hookSecret = getenv("KH_WEBHOOK_SECRET")
	}
	generated := false
	switch {
	case *key == "" && *secret == "":
		id, sec, err := NewCredentials()
		if err != nil {
			return fmt.Errorf("emulator: generating credentials: %w", err)
		}
		*key, *secret, generated = id, sec, true
	case *key == "" || *secret == "":
		return errors.New("emulator: set both -key and -secret (or KH_KEY and KH_SECRET), or neither to generate them")
	}
	bal, err := parseMoney(*balance)
	if err != nil {
		return fmt.Errorf("emulator: -balance: %w", err)
	}
	if bal == 0 {
		bal = -1 // Options: negative means "start at zero"
	}
	var scopeList []string
	for _, s := range strings.Split(*scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			scopeList = append(scopeList, s)
		}
	}
	emu, err := New(Options{
		Keys:                  []Key{{ID: *key, Secret: *secret, Scopes: scopeList}},
		BasePath:              *basePath,
		RateLimit:             RateLimit{Disabled: *noLimit, PerMinute: *perMinute, Burst: *burst, PerDay: *perDay},
		InitialBalance:        bal,
		WebhookSecret:         *hookSecret,
		WebhookHeader:         *hookHeader,
		AllowInsecureWebhooks: *insecure,
		Faults:                f,
		Logger:                logger,
	})
	if err != nil {
		return err
	}
	defer emu.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("emulator: listen: %w", err)
	}
	if generated {
		fmt.Fprintf(stdout, "Generated credentials for this emulator run (shown once):\nexport KH_KEY=%s\nexport KH_SECRET=%s\n", *key, *secret)
	}
	if *hookSecret == "" {
		fmt.Fprintf(stdout, "export KH_WEBHOOK_SECRET=%s\n", emu.WebhookSecret())
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		logger.Warn("emulator listening on a non-loopback address", "addr", ln.Addr().String())
	}
	fmt.Fprintf(stdout, "listening on http://%s (API base http://%s%s/v1)\n", ln.Addr(), ln.Addr(), emu.BasePath())
	logger.Info("emulator started", "addr", ln.Addr().String(), "key", *key)
	err = httpserve.Serve(ctx, httpserve.Options{
		Grace:          5 * time.Second,
		BeforeShutdown: func() { _ = emu.Close() }, // ends injected delays, so that shutdown does not wait on them
		Logger:         logger,
	}, httpserve.Server{
		Name:         "emulator",
		Listener:     ln,
		Handler:      emu,
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30*time.Second + f.Delay,
	})
	if err != nil {
		return fmt.Errorf("emulator: %w", err)
	}
	logger.Info("emulator stopped")
	return nil
}
