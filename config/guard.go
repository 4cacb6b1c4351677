package config

import (
	"fmt"
	"khproxy/apiroute"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Guard is the part of the configuration that limits what the app may do
// with the key (package guard) and keeps an audit log of its write calls
// (package audit).
type Guard struct {
	Allow         []apiroute.Pattern `env:"KH_ALLOW" help:"Comma-separated \"METHOD /path\" API routes the app may call, with {id} for an id segment, like GET /v1/products,GET /v1/products/{id},POST /v1/orders. Unset: every route. Anything else gets 403 not_allowed and is not sent."`
	OrderLimit    Rate               `env:"KH_ORDER_LIMIT" envDefault:"off" help:"New orders (POST /v1/orders with an Idempotency-Key not counted before) per period, like 10/1h, as in KH_RATE_LIMIT; over it, 429 order_limit and nothing is sent. Shared through KH_REDIS_URL."`
	SpendLimit    SpendLimit         `env:"KH_SPEND_LIMIT" envDefault:"off" help:"Money new orders may cost per period, like 100EUR/24h or 99.50EUR/7d, priced at the product's published price before sending and counted at the answer's amount; over it or unpriceable, 403 spend_limit. Shared through KH_REDIS_URL."`
	AuditLog      string             `env:"KH_AUDIT_LOG" help:"File to append one hash-chained JSON line to for every write call (POST, PUT, PATCH, DELETE), sent or refused, synced before the answer; one file per replica. Check it with khproxy audit verify FILE."`
	AuditRequired bool               `env:"KH_AUDIT_REQUIRED" envDefault:"false" help:"true: while the audit log cannot be written, write calls get 503 audit_unavailable instead of going out unrecorded."`
}

// SpendLimit is a KH_SPEND_LIMIT value: Cents hundredths of Currency per
// Per. The zero value, written "off", is no limit.
type SpendLimit struct {
	Cents    int64
	Currency string
	Per      time.Duration
}

// Off reports whether s is no limit.
func (s SpendLimit) Off() bool { return s.Per == 0 }

// String writes s as it is written, like 99.50EUR/168h0m0s or off.
func (s SpendLimit) String() string {
	if s.Off() {
		return "off"
	}
	return fmt.Sprintf("%d.%02d%s/%s", s.Cents/100, s.Cents%100, s.Currency, s.Per)
}

var spendPattern = regexp.MustCompile(`^([0-9]{1,12})(?:\.([0-9]{1,2}))?\s*([A-Z]{3})$`)

// UnmarshalText parses "AMOUNT CURRENCY/PERIOD", like 100EUR/24h or
// 99.50EUR/7d (d counts 24 hours), or "off".
func (s *SpendLimit) UnmarshalText(text []byte) error {
	v := strings.TrimSpace(string(text))
	if strings.EqualFold(v, "off") {
		*s = SpendLimit{}
		return nil
	}
	amount, per, ok := strings.Cut(v, "/")
	m := spendPattern.FindStringSubmatch(strings.TrimSpace(amount))
	if !ok || m == nil {
		return fmt.Errorf("want AMOUNT CURRENCY/PERIOD like 100EUR/24h or 99.50EUR/7d (at most two decimals, an ISO 4217 code in capitals), or off; got %q", v)
	}
	whole, _ := strconv.ParseInt(m[1], 10, 64)
	frac, _ := strconv.ParseInt((m[2] + "00")[:2], 10, 64)
	per = strings.TrimSpace(per)
	if days, found := strings.CutSuffix(per, "d"); found {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 3660 {
			return fmt.Errorf("period %q: want a whole number of days like 7d, or a duration like 24h", per)
		}
		per = strconv.Itoa(n*24) + "h"
	}
	d, err := parsePeriod(per)
	if err != nil {
		return err
	}
	*s = SpendLimit{Cents: whole*100 + frac, Currency: m[3], Per: d}
	return nil
}

// validate checks the guard and audit settings.
func (g *Guard) validate(v *validation) {
	if g.Allow != nil && len(g.Allow) == 0 {
		v.fail("KH_ALLOW", "lists no route; unset it to allow every route")
	}
	if !g.SpendLimit.Off() && g.SpendLimit.Cents <= 0 {
		v.fail("KH_SPEND_LIMIT", "the amount must be positive (off turns the limit off), got %s", g.SpendLimit)
	}
	if !g.OrderLimit.Off() && g.OrderLimit.Per < time.Second {
		v.fail("KH_ORDER_LIMIT", "the period must be at least a second, got %s", g.OrderLimit)
	}
	if g.AuditRequired && g.AuditLog == "" {
		v.fail("KH_AUDIT_REQUIRED", "is true but KH_AUDIT_LOG is not set")
	}
}
