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

// cliFlags is the command line of "khproxy emulator". Its defaults are
// the realistic ones (read-only key, lifecycle delays, production webhook
// retries), unlike the Go API's zero values; see the package doc.
type cliFlags struct {
	listen, key, secret, scopes, allowIP, basePath, balance           string
	hookSecret, hookHeader, hookRetries, card, signedPath, inProgress string
	perMinute, burst, perDay                                          int
	noLimit, insecure, noControl                                      bool
	faults                                                            Faults
	life                                                              Lifecycle
}

func (c *cliFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8081", "address to listen on (keep it on loopback unless you mean otherwise)")
	fs.StringVar(&c.key, "key", "", "API key id kh_live_[A-Z0-9]{32} (env KH_KEY; generated if neither key nor secret is set)")
	fs.StringVar(&c.secret, "secret", "", "API secret (env KH_SECRET)")
	fs.StringVar(&c.scopes, "scopes", "read-only", "the key's scopes: read-only (a new key, spec §4.2), all, none, or a list such as read:products,write:orders")
	fs.StringVar(&c.allowIP, "allow-ip", "", "the key's IP whitelist, CIDRs or addresses, comma-separated (empty: any); others get 401 ip_not_allowed")
	fs.StringVar(&c.basePath, "base-path", DefaultBasePath, `path prefix before /v1 ("/" for none)`)
	fs.StringVar(&c.signedPath, "signed-path", SignedPathV1, "which path the signature covers (spec §9.1 leaves it open): v1 (/v1/..., as the docs' examples sign) or full (the base path plus /v1/...; khproxy: KH_SIGNED_PATH=full)")
	fs.IntVar(&c.perMinute, "rate-per-minute", DefaultRatePerMinute, "per-key requests per minute (0: the default; see -no-rate-limit)")
	fs.IntVar(&c.burst, "burst", DefaultBurst, "per-key burst (0: the default)")
	fs.IntVar(&c.perDay, "rate-per-day", DefaultRatePerDay, "per-key requests per day (0: the default)")
	fs.BoolVar(&c.noLimit, "no-rate-limit", false, "disable all rate limits")
	fs.StringVar(&c.balance, "balance", money(DefaultInitialBalance), "initial credit balance, e.g. 500 or 12.50 (0 for none)")
	fs.StringVar(&c.card, "card", string(CardNone), "card on file: none, valid, declining (402 card_declined) or expired (402 card_expired)")
	fs.DurationVar(&c.life.PaymentDelay, "payment-delay", DefaultPaymentDelay, "an order is pending this long before it is paid (0: paid inside the request)")
	fs.DurationVar(&c.life.ProvisionDelay, "provision-delay", DefaultProvisionDelay, "a paid order's service is provisioning this long (0: active at once)")
	fs.DurationVar(&c.life.ActionDelay, "action-delay", DefaultActionDelay, "start/stop/reboot/reinstall answer 202 pending and complete after this long (0: at once)")
	fs.BoolVar(&c.life.Manual, "manual-lifecycle", false, "lifecycle steps wait for POST /__emulator/advance instead of their delays")
	fs.StringVar(&c.hookSecret, "webhook-secret", "", "webhook signing secret (env KH_WEBHOOK_SECRET; generated and printed if empty)")
	fs.StringVar(&c.hookHeader, "webhook-header", DefaultWebhookHeader, "webhook signature header name")
	fs.StringVar(&c.hookRetries, "webhook-retries", "production", "waits between webhook attempts: production (1m,5m,30m,2h,6h,12h,24h), fast, none, or e.g. 1s,10s,1m")
	fs.BoolVar(&c.insecure, "allow-insecure-webhooks", false, "allow http:// and loopback/private webhook URLs (local testing)")
	fs.BoolVar(&c.noControl, "no-control", false, "turn off the control endpoint "+ControlPath)
	fs.IntVar(&c.faults.DropAfterCommit, "drop-after-commit", 0, "fault: drop the connection after the next N committed writes")
	fs.DurationVar(&c.faults.Delay, "delay", 0, "fault: delay answers by this duration")
	fs.IntVar(&c.faults.DelayCount, "delay-count", 0, "fault: delay only the next N requests (0: all)")
	fs.IntVar(&c.faults.FailCount, "fail-count", 0, "fault: answer the next N requests with -fail-status")
	fs.IntVar(&c.faults.FailStatus, "fail-status", 503, "fault: status for -fail-count (429 or 5xx)")
	fs.DurationVar(&c.faults.RetryAfter, "retry-after", 0, "fault: Retry-After for injected 429/5xx")
	fs.DurationVar(&c.faults.ClockOffset, "clock-offset", 0, "fault: run the server clock with this offset")
	fs.IntVar(&c.faults.DuplicateWebhooks, "duplicate-webhooks", 0, "fault: send the next N webhook deliveries twice")
	fs.IntVar(&c.faults.FailAfterCommit, "fail-after-commit", 0, "fault: answer 500 to the next N committed writes, after committing them and storing their real answer")
	fs.DurationVar(&c.faults.SlowAfterCommit, "slow-after-commit", 0, "fault: answer committed writes this long after committing them (the key stays in progress meanwhile)")
	fs.IntVar(&c.faults.SlowAfterCommitCount, "slow-after-commit-count", 0, "fault: slow only the next N committed writes (0: all)")
	fs.StringVar(&c.inProgress, "in-progress", string(InProgressConflict), "what a request gets whose Idempotency-Key is still being answered: 409 (request_in_progress, Retry-After: 1) or replay (wait, then the stored answer); the spec does not say")
	r := &c.faults.Random
	fs.Float64Var(&r.Unavailable, "random-unavailable", 0, "random fault: share of requests (0 to 1) answered 503 before any work")
	fs.Float64Var(&r.RateLimited, "random-rate-limited", 0, "random fault: share of requests answered 429 before any work")
	fs.Float64Var(&r.DropAfterCommit, "random-drop-after-commit", 0, "random fault: share of committed writes whose connection is dropped after the commit")
	fs.Float64Var(&r.FailAfterCommit, "random-fail-after-commit", 0, "random fault: share of committed writes answered 500 after the commit")
	fs.Float64Var(&r.SlowAfterCommit, "random-slow-after-commit", 0, "random fault: share of committed writes answered -random-slow-delay after the commit")
	fs.DurationVar(&r.SlowDelay, "random-slow-delay", 0, "random fault: how late -random-slow-after-commit answers")
	fs.DurationVar(&r.ClockStep, "clock-walk-step", 0, "random fault: every -clock-walk-every the clock offset moves this much up or down")
	fs.DurationVar(&r.ClockEvery, "clock-walk-every", 0, "random fault: how often the clock offset steps")
	fs.DurationVar(&r.ClockMax, "clock-walk-max", 0, "random fault: the clock offset stays within plus or minus this")
	fs.Uint64Var(&r.Seed, "random-seed", 0, "seed of the random faults (0: random)")
}

// options builds New's Options from the flags (credentials already set).
func (c *cliFlags) options(logger *slog.Logger) (Options, error) {
	bal, err := parseMoney(c.balance)
	if err != nil {
		return Options{}, fmt.Errorf("emulator: -balance: %w", err)
	}
	if bal == 0 {
		bal = -1 // Options: negative means "start at zero"
	}
	scopes, err := ParseScopes(c.scopes)
	if err != nil {
		return Options{}, fmt.Errorf("emulator: -scopes: %w", err)
	}
	allow, err := ParseAllowIPs(c.allowIP)
	if err != nil {
		return Options{}, fmt.Errorf("emulator: -allow-ip: %w", err)
	}
	retries, err := ParseWebhookRetries(c.hookRetries)
	if err != nil {
		return Options{}, fmt.Errorf("emulator: -webhook-retries: %w", err)
	}
	card, err := ParseCard(c.card)
	if err != nil {
		return Options{}, fmt.Errorf("emulator: -card: %w", err)
	}
	inProgress, err := ParseInProgress(c.inProgress)
	if err != nil {
		return Options{}, fmt.Errorf("emulator: -in-progress: %w", err)
	}
	return Options{
		Keys:                  []Key{{ID: c.key, Secret: c.secret, Scopes: scopes, AllowIPs: allow}},
		BasePath:              c.basePath,
		SignedPath:            c.signedPath,
		RateLimit:             RateLimit{Disabled: c.noLimit, PerMinute: c.perMinute, Burst: c.burst, PerDay: c.perDay},
		InitialBalance:        bal,
		Card:                  card,
		WebhookSecret:         c.hookSecret,
		WebhookHeader:         c.hookHeader,
		WebhookRetries:        retries,
		AllowInsecureWebhooks: c.insecure,
		Faults:                c.faults,
		InProgress:            inProgress,
		Lifecycle:             c.life,
		NoControl:             c.noControl,
		Logger:                logger,
	}, nil
}

// longestDelay is the longest answer delay the fault flags ask for; the
// write timeout makes room for it (delays set later on the control
// endpoint get no more room).
func (c *cliFlags) longestDelay() time.Duration {
	return max(c.faults.Delay, c.faults.SlowAfterCommit, c.faults.Random.SlowDelay)
}

// banner prints what a user of this run needs: generated credentials
// (once), the address, the key's scopes and the control endpoint.
func (c *cliFlags) banner(w io.Writer, emu *Emulator, addr string, generated bool) {
	if generated {
		fmt.Fprintf(w, "Generated credentials for this emulator run (shown once):\nexport KH_KEY=%s\nexport KH_SECRET=%s\n", c.key, c.secret)
	}
	if c.hookSecret == "" {
		fmt.Fprintf(w, "export KH_WEBHOOK_SECRET=%s\n", emu.WebhookSecret())
	}
	fmt.Fprintf(w, "listening on http://%s\nexport KH_UPSTREAM=http://%s%s  # for khproxy in front of it\n", addr, addr, emu.BasePath())
	if c.signedPath == SignedPathFull {
		fmt.Fprintf(w, "export KH_SIGNED_PATH=full  # -signed-path full: signatures cover %s/v1/..., not /v1/...\n", emu.BasePath())
	}
	k, _ := emu.auth.Get(c.key)
	scopes := k.Scopes
	note := ""
	if c.scopes == "read-only" {
		note = " (read-only, as a new key is; -scopes all to place orders)"
	}
	fmt.Fprintf(w, "key scopes: %s%s\n", strings.Join(scopes, ","), note)
	if !c.noControl {
		fmt.Fprintf(w, "control endpoint: http://%s%s (faults, keys, lifecycle, reset; see docs/emulator.md)\n", addr, ControlPath)
	}
}

// Run runs the emulator as a standalone server (the "khproxy emulator"
// subcommand) until ctx is done, then shuts down gracefully and returns
// nil. args are the arguments after the subcommand; getenv supplies
// KH_KEY, KH_SECRET and KH_WEBHOOK_SECRET as fallbacks for the flags. When
// neither -key/-secret nor the environment provide credentials, fresh ones
// are generated and printed once to stdout as export lines. Run prints
// "listening on http://ADDR" with the actual bound address (so -listen
// 127.0.0.1:0 works) and the key's scopes. -h prints usage to stdout and
// returns nil. Bad flags or values return an error.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	fs := flag.NewFlagSet("khproxy emulator", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, and printed once by the caller
	var c cliFlags
	c.register(fs)
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
	if c.key == "" {
		c.key = getenv("KH_KEY")
	}
	if c.secret == "" {
		c.secret = getenv("KH_SECRET")
	}
	if c.hookSecret == "" {
		c.hookSecret = getenv("KH_WEBHOOK_SECRET")
	}
	generated := false
	switch {
	case c.key == "" && c.secret == "":
		id, sec, err := NewCredentials()
		if err != nil {
			return fmt.Errorf("emulator: generating credentials: %w", err)
		}
		c.key, c.secret, generated = id, sec, true
	case c.key == "" || c.secret == "":
		return errors.New("emulator: set both -key and -secret (or KH_KEY and KH_SECRET), or neither to generate them")
	}
	opts, err := c.options(logger)
	if err != nil {
		return err
	}
	emu, err := New(opts)
	if err != nil {
		return err
	}
	defer emu.Close()

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("emulator: listen: %w", err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		logger.Warn("emulator listening on a non-loopback address", "addr", ln.Addr().String())
	}
	c.banner(stdout, emu, ln.Addr().String(), generated)
	logger.Info("emulator started", "addr", ln.Addr().String(), "key", c.key)
	err = httpserve.Serve(ctx, httpserve.Options{
		Grace:          5 * time.Second,
		BeforeShutdown: func() { _ = emu.Close() }, // ends injected delays, so that shutdown does not wait on them
		Logger:         logger,
	}, httpserve.Server{
		Name:         "emulator",
		Listener:     ln,
		Handler:      emu,
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30*time.Second + c.longestDelay(),
	})
	if err != nil {
		return fmt.Errorf("emulator: %w", err)
	}
	logger.Info("emulator stopped")
	return nil
}
