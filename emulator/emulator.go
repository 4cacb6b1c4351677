package emulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"khproxy/emulator/apiauth"
	"khproxy/emulator/webhooksend"
)

// DefaultBasePath is the path prefix of the real API; signed paths start
// after it, at /v1/ (spec §1.2).
const DefaultBasePath = "/cp/kh_reseller_api"

// DefaultInitialBalance is the credit each account starts with, in minor
// units (50000 = 500.00).
const DefaultInitialBalance = 50000

// DefaultWebhookHeader carries the webhook signature.
const DefaultWebhookHeader = "KH-Webhook-Signature"

// DefaultAccount is the account of keys whose Key.Account is empty.
const DefaultAccount = "acct_default"

// Options configure New. Only Keys is required; every other zero value
// selects the documented default.
type Options struct {
	// Keys accepted by the emulator; at least one.
	Keys []Key
	// BasePath is the prefix before /v1 (default DefaultBasePath; "/"
	// means none). It must start with "/" and must not end with "/".
	BasePath string
	// Now is the base clock (default time.Now); Faults.ClockOffset is
	// added for the server clock. Rate limits and idempotency retention use
	// Now without the offset.
	Now func() time.Time
	// RateLimit configures the token buckets (zero: spec defaults).
	RateLimit RateLimit
	// InitialBalance is each account's starting credit in minor units:
	// 0 means DefaultInitialBalance, negative means start at zero.
	InitialBalance int64
	// Currency is the ISO 4217 code for all amounts (default "EUR").
	Currency string
	// WebhookSecret signs webhook deliveries (generated when empty;
	// read it back with Emulator.WebhookSecret).
	WebhookSecret string
	// WebhookHeader names the signature header (default DefaultWebhookHeader).
	WebhookHeader string
	// AllowInsecureWebhooks accepts http:// URLs and loopback, private and
	// link-local hosts for webhooks (local testing only).
	AllowInsecureWebhooks bool
	// WebhookClient delivers webhooks. Nil: a client with a 10 s timeout
	// that follows no redirects and whose dialer refuses non-public
	// addresses unless AllowInsecureWebhooks (see webhooksend.Options).
	// A custom client gets no such guard.
	WebhookClient *http.Client
	// WebhookRetries are the waits before each retry of a failed webhook
	// delivery; the number of attempts is len+1. Nil means
	// FastWebhookRetries (for tests); an empty non-nil slice means one
	// attempt only. "khproxy emulator" uses ProductionWebhookRetries.
	WebhookRetries []time.Duration
	// Faults is the initial fault configuration (see Emulator.SetFaults).
	Faults Faults
	// InProgress is what a request gets whose Idempotency-Key belongs to
	// a request still being answered ("": InProgressConflict); see
	// InProgress and Emulator.SetInProgress.
	InProgress InProgress
	// Lifecycle times the steps after an order or action is accepted. The
	// zero value settles them inside the request (see Lifecycle).
	Lifecycle Lifecycle
	// Card is every account's initial card on file ("": CardNone, so an
	// order above the balance is 402 insufficient_credit_and_no_card).
	Card Card
	// SignedPath is which form of the request path the emulator verifies
	// signatures over (spec §9.1 leaves it open): SignedPathV1 ("" or
	// "v1"), the path from /v1 on as every example of the docs signs it,
	// or SignedPathFull ("full"), the whole request-target, base path
	// included.
	SignedPath string
	// NoControl turns off the control endpoint under ControlPath (it is
	// on by default; see Emulator.ServeHTTP).
	NoControl bool
	// Logger receives one line per request (never secrets); nil discards.
	Logger *slog.Logger
}

// Emulator is an in-memory KernelHost Reseller API. Create it with New;
// it is an http.Handler safe for concurrent use. Call Close to stop
// webhook delivery.
type Emulator struct {
	basePath       string
	now            func() time.Time
	log            *slog.Logger
	currency       string
	initialBalance int64
	rateCfg        RateLimit

	maxBody   int64
	maxOrders int
	lookupIP  func(ctx context.Context, host string) ([]string, error)

	initial     Options // what Reset returns to (keys cloned)
	initialCard Card
	noControl   bool
	signFull    bool // Options.SignedPath is SignedPathFull

	mu          sync.Mutex        // guards everything below up to faultMu
	epoch       int64             // bumped by Reset; lifecycle steps of another epoch do nothing
	hookURLs    map[string]string // key id -> its webhook URL (PUT /v1/webhook)
	accounts    map[string]*account
	orders      map[int64]*Order
	orderIDs    []int64
	services    map[int64]*service
	invoices    map[int64]*invoice
	nextOrder   int64
	nextService int64
	nextInvoice int64
	requests    map[string]int

	faultMu  sync.Mutex // guards the faults and their state below
	faults   Faults
	rng      *rand.Rand     // Random's draws and the clock walk
	walkNext time.Time      // when the clock walk's next step is due; zero: not scheduled
	injected map[string]int // faults fired, by kind (InjectedFaults)

	closing   chan struct{} // closed by Close: injected delays end early
	closeOnce sync.Once

	auth    apiauth.Store // keys and nonces
	idem    idemStore
	limiter *limiter
	hooks   *webhooksend.Sender
	life    *scheduler
}

// New validates opts and returns a running emulator (its webhook sender
// is started). It returns an error for missing or malformed keys, unknown
// scopes, a bad BasePath, Currency or WebhookHeader, negative rate limits,
// delays or retry waits, an unknown Card or invalid faults.
func New(opts Options) (*Emulator, error) {
	o, base, rl, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Emulator{
		closing:        make(chan struct{}),
		basePath:       base,
		now:            o.Now,
		log:            o.Logger,
		currency:       o.Currency,
		initialBalance: o.InitialBalance,
		initialCard:    o.Card,
		noControl:      o.NoControl,
		signFull:       o.SignedPath == SignedPathFull,
		rateCfg:        rl,
		maxBody:        1 << 20,
		maxOrders:      10000,
		lookupIP:       net.DefaultResolver.LookupHost,
		idem:           idemStore{max: 20000, inProgress: o.InProgress},
		limiter:        newLimiter(rl),
		life:           newScheduler(o.Lifecycle),
	}
	e.setFaultsLocked(o.Faults)
	e.clearLocked()
	for _, k := range o.Keys {
		if _, dup := e.auth.Get(k.ID); dup {
			return nil, fmt.Errorf("emulator: duplicate key %s", k.ID)
		}
		if err := e.SetKey(k); err != nil {
			return nil, err
		}
	}
	o.Keys = slices.Clone(o.Keys)
	e.initial = o
	if e.hooks, err = e.newWebhookSender(o); err != nil {
		return nil, err
	}
	return e, nil
}

// withDefaults validates opts and fills in every default. base is the
// effective base path ("" for none); rl the effective rate limits.
func (opts Options) withDefaults() (o Options, base string, rl RateLimit, err error) {
	o = opts
	if len(o.Keys) == 0 {
		return o, "", rl, errors.New("emulator: at least one key is required")
	}
	switch base = o.BasePath; {
	case base == "":
		base = DefaultBasePath
	case base == "/":
		base = ""
	case !strings.HasPrefix(base, "/") || strings.HasSuffix(base, "/") || strings.ContainsAny(base, "?#"):
		return o, "", rl, fmt.Errorf("emulator: base path %q must start with / and not end with /", base)
	case base == strings.TrimSuffix(ControlPath, "/") || strings.HasPrefix(base, ControlPath):
		return o, "", rl, fmt.Errorf("emulator: base path %q collides with the control endpoint %s", base, ControlPath)
	}
	if rl, err = o.RateLimit.withDefaults(); err != nil {
		return o, "", rl, err
	}
	if err = errors.Join(o.Faults.validate(), o.Lifecycle.validate(), webhooksend.ValidateRetries(o.WebhookRetries)); err != nil {
		return o, "", rl, err
	}
	if o.Card, err = ParseCard(string(o.Card)); err != nil {
		return o, "", rl, err
	}
	switch o.SignedPath {
	case "", SignedPathV1, SignedPathFull:
	default:
		return o, "", rl, fmt.Errorf("emulator: signed path %q must be %s or %s", o.SignedPath, SignedPathV1, SignedPathFull)
	}
	if o.InProgress, err = ParseInProgress(string(o.InProgress)); err != nil {
		return o, "", rl, err
	}
	if o.Currency == "" {
		o.Currency = "EUR"
	}
	if !currencyPattern.MatchString(o.Currency) {
		return o, "", rl, fmt.Errorf("emulator: currency %q must be three uppercase letters", o.Currency)
	}
	if o.WebhookHeader == "" {
		o.WebhookHeader = DefaultWebhookHeader
	}
	if !headerPattern.MatchString(o.WebhookHeader) {
		return o, "", rl, fmt.Errorf("emulator: webhook header %q is not a valid header name", o.WebhookHeader)
	}
	switch {
	case o.InitialBalance == 0:
		o.InitialBalance = DefaultInitialBalance
	case o.InitialBalance < 0:
		o.InitialBalance = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, base, rl, nil
}

var (
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
	headerPattern   = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
)

// clearLocked empties all resources and counters; e.mu must be held (or
// e not yet shared).
func (e *Emulator) clearLocked() {
	e.hookURLs = map[string]string{}
	e.accounts = map[string]*account{}
	e.orders = map[int64]*Order{}
	e.orderIDs = nil
	e.services = map[int64]*service{}
	e.invoices = map[int64]*invoice{}
	e.nextOrder, e.nextService, e.nextInvoice = 1001, 5001, 9001
	e.requests = map[string]int{}
}

// Close stops webhook delivery (queued and retrying deliveries are
// discarded) and waits for the senders, and drops waiting lifecycle steps.
// The handler keeps answering, but accepted orders and slow actions then
// stay pending unless the lifecycle is instant. Close is idempotent and
// always returns nil.
func (e *Emulator) Close() error {
	e.closeOnce.Do(func() { close(e.closing) })
	e.life.drop(true)
	e.hooks.Close()
	return nil
}

// WebhookSecret returns the secret that signs webhook deliveries.
func (e *Emulator) WebhookSecret() string { return e.hooks.Secret() }

// BasePath returns the effective path prefix ("" when none).
func (e *Emulator) BasePath() string { return e.basePath }
