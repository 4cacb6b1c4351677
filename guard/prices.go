package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// PriceSource gives a product's published price for a billing cycle.
// Implementations are safe for concurrent use.
type PriceSource interface {
	// Price returns product's price for cycle. An error wrapping
	// ErrNoPrice means the API gave an answer that holds no usable price
	// (unknown product, no such cycle, an amount khproxy cannot count);
	// any other error means the price could not be asked for.
	Price(ctx context.Context, product, cycle string) (Money, error)
}

// ErrNoPrice says that a product has no published price khproxy can use.
var ErrNoPrice = errors.New("no usable published price")

// DefaultPriceTTL is how long HTTPPrices keeps a product's prices.
const DefaultPriceTTL = 5 * time.Minute

// HTTPPrices asks the API for GET /v1/products/{id} and reads its
// "currency" and "prices" (billing cycle -> decimal amount), keeping each
// product's answer for TTL. The answer's shape is not documented by the
// API (spec §5): it is the emulator's, and any other shape is no usable
// price (the guard then refuses the order). Fill the fields before first
// use; it is then safe for concurrent use.
type HTTPPrices struct {
	// Client sends the lookups; it must sign them (run.go gives it a
	// signing transport) and should bound their time. Required.
	Client *http.Client
	// Base is the API's base URL, without /v1. Required.
	Base *url.URL
	// TTL is how long an answer is kept; 0 means DefaultPriceTTL.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedProduct
}

type cachedProduct struct {
	at       time.Time
	currency string
	prices   map[string]string
}

// productAnswer is the part of a product khproxy reads.
type productAnswer struct {
	Currency string            `json:"currency"`
	Prices   map[string]string `json:"prices"`
}

// Price implements PriceSource.
func (h *HTTPPrices) Price(ctx context.Context, product, cycle string) (Money, error) {
	p, err := h.product(ctx, product)
	if err != nil {
		return Money{}, err
	}
	amount, ok := p.prices[cycle]
	if !ok {
		return Money{}, fmt.Errorf("product %s has no published price for billing_cycle %q: %w", product, cycle, ErrNoPrice)
	}
	cents, err := ParseCents(amount, false)
	if err != nil {
		return Money{}, fmt.Errorf("product %s, %s: %w: %w", product, cycle, ErrNoPrice, err)
	}
	return Money{Cents: cents, Currency: p.currency}, nil
}

func (h *HTTPPrices) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// product returns product's prices, from the cache when fresh enough.
func (h *HTTPPrices) product(ctx context.Context, product string) (cachedProduct, error) {
	ttl := h.TTL
	if ttl <= 0 {
		ttl = DefaultPriceTTL
	}
	h.mu.Lock()
	p, ok := h.cache[product]
	h.mu.Unlock()
	if ok && h.now().Sub(p.at) < ttl {
		return p, nil
	}
	p, err := h.fetch(ctx, product)
	if err != nil {
		return p, err
	}
	h.mu.Lock()
	if h.cache == nil {
		h.cache = map[string]cachedProduct{}
	}
	for k, c := range h.cache {
		if h.now().Sub(c.at) >= ttl {
			delete(h.cache, k)
		}
	}
	h.cache[product] = p
	h.mu.Unlock()
	return p, nil
}

// fetch asks the API for product.
func (h *HTTPPrices) fetch(ctx context.Context, product string) (cachedProduct, error) {
	u := *h.Base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/products/" + product
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return cachedProduct{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.Client.Do(req)
	if err != nil {
		return cachedProduct{}, fmt.Errorf("price lookup of product %s: %w", product, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return cachedProduct{}, fmt.Errorf("price lookup of product %s: %w", product, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return cachedProduct{}, fmt.Errorf("product %s: the API knows no such product (404): %w", product, ErrNoPrice)
	case resp.StatusCode != http.StatusOK:
		return cachedProduct{}, fmt.Errorf("price lookup of product %s: the API answered %d", product, resp.StatusCode)
	}
	var a productAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.Currency == "" || a.Prices == nil {
		return cachedProduct{}, fmt.Errorf("product %s: the answer has no currency and prices khproxy can read: %w", product, ErrNoPrice)
	}
	return cachedProduct{at: h.now(), currency: a.Currency, prices: a.Prices}, nil
}
