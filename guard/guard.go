// Package guard limits what an app can do with the API key khproxy holds
// for it: which routes it may call (an allow-list), how many new orders it
// may place in a period, and how much money they may cost. It is a
// proxy.Gate: the proxy asks it before anything is sent and tells it how
// each request was answered.
//
// Orders are told apart by their Idempotency-Key: an order sent with a key
// already counted (a caller's retry, or khproxy's own retry of an
// unanswered order under its automatic key) is the same order and is not
// counted again. Before a new order is sent the guard prices it at the
// product's published list price for its billing cycle (PriceSource) and
// reserves that amount; once the API answers 201 the answer's own amount
// replaces it. Whatever cannot be priced or counted is refused: the guard
// fails closed.
//
// The package knows nothing of environment variables or of Redis: its
// caller gives it Options and a Store.
package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"khproxy/apiroute"
	"log/slog"
	"net/http"
	"time"

	"khproxy/proxy"
)

// OrdersRoute is the route whose POSTs are orders.
const OrdersRoute = "/v1/orders"

// Options configures a Guard. Every limit is off at its zero value.
type Options struct {
	// Allow lists the routes the app may call; nil allows every route.
	Allow []apiroute.Pattern
	// Orders new orders are allowed per OrderPer; OrderPer 0: no limit.
	Orders   int
	OrderPer time.Duration
	// Spend bounds the money new orders may cost per SpendPer; SpendPer
	// 0: no limit. Its Currency is the only one an order may be priced in.
	Spend    Money
	SpendPer time.Duration
	// KeyWindow is how long a counted key is remembered at least, so that
	// a retry with it is not a new order (khproxy's idempotency window);
	// the longer period is used when that is longer.
	KeyWindow time.Duration
	// Store keeps the counts; nil means NewMemory(). Required to be shared
	// (Redis) for replicas to enforce one limit.
	Store Store
	// Prices gives the published prices; required with a spend limit.
	Prices PriceSource
	// Logger receives refusals and store failures; nil discards them.
	Logger *slog.Logger
	// Metrics receives the guard's measurements; nil measures nothing.
	Metrics *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Guard enforces Options. Create it with New; it is safe for concurrent
// use.
type Guard struct {
	allow  allowList
	limits Limits
	spend  Money
	store  Store
	prices PriceSource
	log    *slog.Logger
	m      *Metrics
	now    func() time.Time
}

var _ proxy.Gate = (*Guard)(nil)

// New checks opts and returns its Guard.
func New(opts Options) (*Guard, error) {
	g := &Guard{
		limits: Limits{Orders: opts.Orders, OrderPer: opts.OrderPer, Spend: opts.Spend.Cents, SpendPer: opts.SpendPer, Keep: opts.KeyWindow},
		spend:  opts.Spend, store: opts.Store, prices: opts.Prices, log: opts.Logger, m: opts.Metrics, now: opts.Now,
	}
	if opts.Allow != nil {
		g.allow = allowList{}
		for _, r := range opts.Allow {
			if err := checkRoute(r); err != nil {
				return nil, err
			}
			g.allow[r.String()] = true
		}
	}
	switch {
	case opts.OrderPer < 0 || (opts.OrderPer > 0 && opts.Orders <= 0):
		return nil, errors.New("guard: an order limit needs a positive count and period")
	case opts.SpendPer < 0 || (opts.SpendPer > 0 && (opts.Spend.Cents <= 0 || opts.Spend.Currency == "")):
		return nil, errors.New("guard: a spend limit needs a positive amount, a currency and a period")
	case opts.SpendPer > 0 && opts.Prices == nil:
		return nil, errors.New("guard: a spend limit needs a PriceSource")
	}
	if g.store == nil {
		g.store = NewMemory()
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g, nil
}

// limitsOrders reports whether g counts orders at all.
func (g *Guard) limitsOrders() bool { return g.limits.OrderPer > 0 || g.limits.SpendPer > 0 }

// noteKey is the Call.Set key of an order the guard counted.
type noteKey struct{}

// note is what Admit leaves for Record: the counted order.
type note struct {
	key   string
	price Money
	usage Usage // the periods' usage once this order was counted
}

// Admit implements proxy.Gate: it refuses a route off the allow-list, and
// an order over a limit or that cannot be priced or counted.
func (g *Guard) Admit(ctx context.Context, c *proxy.Call) error {
	if !g.allow.allows(c.Method, c.Route) {
		return g.refuse(c, &proxy.Error{Kind: proxy.KindNotAllowed,
			Detail: fmt.Sprintf("%s %s is not on khproxy's allow-list; the request was not sent", c.Method, c.Route)})
	}
	if c.Method != http.MethodPost || c.Route != OrdersRoute || !g.limitsOrders() {
		return nil
	}
	return g.admitOrder(ctx, c)
}

// admitOrder prices and counts a new order, or refuses it.
func (g *Guard) admitOrder(ctx context.Context, c *proxy.Call) error {
	key := c.IdempotencyKey
	if key == "" {
		// Nothing tells its retry apart: every one is a new order.
		key = "khproxy-" + c.ID
	}
	var price Money
	var unpriced error
	if g.limits.SpendPer > 0 {
		price, unpriced = g.price(ctx, c)
		if unpriced != nil {
			// A retry of an order counted before is let through even
			// so: the product may have left the catalog since.
			price.Cents = -1
		}
	}
	d, err := g.store.Reserve(ctx, Order{Key: key, Time: g.now(), Cents: price.Cents}, g.limits)
	if err != nil {
		g.log.Error("guard: order counters unreachable: orders are refused until they answer", "error", err, "request_id", c.ID)
		return g.refuse(c, &proxy.Error{Kind: proxy.KindGuardUnavailable, RetryAfter: 5 * time.Second, Err: err,
			Detail: "khproxy cannot reach the shared order and spend counters (Redis), so it refuses orders rather than risk exceeding its limits; the order was not sent"})
	}
	switch d.Refused {
	case RuleUnpriced:
		return g.refuse(c, unpriced)
	case RuleOrderLimit:
		secs := int((d.RetryAfter + time.Second - 1) / time.Second)
		return g.refuse(c, &proxy.Error{Kind: proxy.KindOrderLimit, RetryAfter: max(d.RetryAfter, time.Second),
			Detail: fmt.Sprintf("khproxy's order limit (%d per %s) is reached; the order was not sent; the next one fits in %d s", g.limits.Orders, g.limits.OrderPer, secs)})
	case RuleSpendLimit:
		return g.refuse(c, &proxy.Error{Kind: proxy.KindSpendLimit,
			Detail: fmt.Sprintf("this order (%s at the published price) would take the spend of the last %s to %s, over khproxy's spend limit of %s; the order was not sent",
				price, g.limits.SpendPer, Money{Cents: d.Spent + price.Cents, Currency: g.spend.Currency}, g.spend)})
	}
	if !d.Known {
		c.Set(noteKey{}, &note{key: key, price: price, usage: d.Usage})
	}
	g.m.usage(d.Usage, g.spend.Currency, g.limits)
	return nil
}

// order is the part of an order's body the guard reads (spec §5's example).
type order struct {
	ProductID    json.RawMessage `json:"product_id"`
	BillingCycle string          `json:"billing_cycle"`
}

// price returns the published price of the order c, or the refusal.
func (g *Guard) price(ctx context.Context, c *proxy.Call) (Money, error) {
	var o order
	if err := json.Unmarshal(c.Body(), &o); err != nil || o.BillingCycle == "" {
		return Money{}, &proxy.Error{Kind: proxy.KindSpendLimit, Err: err,
			Detail: "khproxy's spend limit prices each order by its product_id and billing_cycle, and this body has none it can read; the order was not sent"}
	}
	product, ok := productID(o.ProductID)
	if !ok {
		return Money{}, &proxy.Error{Kind: proxy.KindSpendLimit,
			Detail: "khproxy's spend limit prices each order by its product_id, and this one is not a product id; the order was not sent"}
	}
	p, err := g.prices.Price(ctx, product, o.BillingCycle)
	switch {
	case errors.Is(err, ErrNoPrice):
		return Money{}, &proxy.Error{Kind: proxy.KindSpendLimit, Err: err,
			Detail: "khproxy cannot price this order, so its spend limit refuses it (" + err.Error() + "); the order was not sent"}
	case err != nil:
		return Money{}, &proxy.Error{Kind: proxy.KindGuardUnavailable, Err: err, RetryAfter: 5 * time.Second,
			Detail: "khproxy could not look up the product's price for its spend limit, so it refuses the order; the order was not sent"}
	case p.Currency != g.spend.Currency:
		return Money{}, &proxy.Error{Kind: proxy.KindSpendLimit,
			Detail: fmt.Sprintf("the product is priced in %s and khproxy's spend limit counts %s only; the order was not sent", p.Currency, g.spend.Currency)}
	}
	return p, nil
}

// productID returns the product id of an order: a JSON integer, or a
// string of digits (either way digits only, as the id is put in a path).
func productID(raw json.RawMessage) (string, bool) {
	s := string(raw)
	if len(s) > 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if !digits(s) || len(s) > 19 {
		return "", false
	}
	return s, true
}

// refuse logs and counts a refusal and returns it.
func (g *Guard) refuse(c *proxy.Call, err error) error {
	var e *proxy.Error
	if errors.As(err, &e) {
		g.m.refused(string(e.Kind))
		g.log.Warn("guard: request refused", "rule", string(e.Kind), "method", c.Method, "route", c.Route,
			"idempotency_key", c.IdempotencyKey, "request_id", c.ID, "reason", e.Detail)
	}
	return err
}

// answer is the part of an order's answer the guard reads.
type answer struct {
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
}

// Record implements proxy.Gate: an order the guard counted is settled at
// the answer's amount (201), forgotten when it was certainly not placed
// (never sent, or refused by the API with a 4xx), and otherwise kept at its
// price: an order in doubt counts.
func (g *Guard) Record(c *proxy.Call, o *proxy.Outcome) {
	n, _ := c.Value(noteKey{}).(*note)
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	u := n.usage
	switch {
	case !o.Sent || (o.UpstreamStatus >= 400 && o.UpstreamStatus < 500):
		err = g.store.Release(ctx, n.key)
		if g.limits.OrderPer > 0 {
			u.Orders--
		}
		if g.limits.SpendPer > 0 {
			u.Spent -= n.price.Cents
		}
	case o.UpstreamStatus == http.StatusCreated && g.limits.SpendPer > 0:
		cents, ok := g.amount(c, o, n)
		if ok && cents != n.price.Cents {
			err = g.store.Settle(ctx, n.key, cents)
			u.Spent += cents - n.price.Cents
		}
	}
	if err != nil {
		g.log.Error("guard: could not update the order counters; the order stays counted at its published price", "error", err, "request_id", c.ID)
		return
	}
	// The usage as this order left it; other orders of the moment (other
	// replicas') show in the next one's.
	g.m.usage(u, g.spend.Currency, g.limits)
}

// amount reads the amount of a 201 answer; when it cannot, the published
// price stays counted and the reason is logged.
func (g *Guard) amount(c *proxy.Call, o *proxy.Outcome, n *note) (int64, bool) {
	var a answer
	err := json.Unmarshal(o.Answer, &a)
	if err == nil && a.Currency != g.spend.Currency {
		err = fmt.Errorf("currency %q, not %s", a.Currency, g.spend.Currency)
	}
	var cents int64
	if err == nil {
		cents, err = ParseCents(a.Amount, true)
	}
	if err != nil {
		g.log.Error("guard: cannot read the amount of the order's answer; its published price is counted", "error", err,
			"price", n.price.String(), "request_id", c.ID, "api_request_id", o.UpstreamRequestID)
		return 0, false
	}
	return cents, true
}
