package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"khproxy/audit"
	"khproxy/config"
	"khproxy/guard"
	"khproxy/proxy"
	"khproxy/proxy/upstream"
	"khproxy/ratelimit"
	"khproxy/signer"
)

// newGates builds what the proxy asks before sending and tells after: the
// audit log (KH_AUDIT_LOG) and the guard (KH_ALLOW, KH_ORDER_LIMIT,
// KH_SPEND_LIMIT), in that order, so that a log that must be written and
// cannot turns a call away before the guard counts it. The guard's counters
// are in Redis with KH_REDIS_URL. done closes the audit log; on an error
// it is already closed.
func newGates(cfg config.Config, log *slog.Logger, reg prometheus.Registerer, s *signer.Signer, rl rateLimiting) (gates []proxy.Gate, done func(), err error) {
	done = func() {}
	if cfg.AuditLog != "" {
		l, err := audit.Open(cfg.AuditLog, audit.Options{Required: cfg.AuditRequired, Logger: log, Registerer: reg})
		if err != nil {
			return nil, done, fmt.Errorf("configuration:\nKH_AUDIT_LOG: %w", err)
		}
		done = func() { _ = l.Close() }
		gates = append(gates, l)
		log.Info("audit log of write calls", "file", cfg.AuditLog, "required", cfg.AuditRequired)
	}
	g := cfg.Guard
	if g.Allow == nil && g.OrderLimit.Off() && g.SpendLimit.Off() {
		return gates, done, nil
	}
	m, err := guard.NewMetrics(reg)
	if err != nil {
		done()
		return nil, func() {}, err
	}
	opts := guard.Options{
		Orders: g.OrderLimit.Count, OrderPer: g.OrderLimit.Per,
		Spend: guard.Money{Cents: g.SpendLimit.Cents, Currency: g.SpendLimit.Currency}, SpendPer: g.SpendLimit.Per,
		KeyWindow: cfg.IdempotencyWindow, Logger: log, Metrics: m,
	}
	opts.Allow = g.Allow
	if rl.store != nil {
		opts.Store = rl.store.Guard()
	}
	if !g.SpendLimit.Off() {
		opts.Prices = &guard.HTTPPrices{Base: cfg.Upstream, Client: priceClient(cfg, s, rl.limiter)}
	}
	gd, err := guard.New(opts)
	if err != nil {
		done()
		return nil, func() {}, fmt.Errorf("configuration:\nKH_ALLOW: %w", err)
	}
	log.Info("guard on", "allow", len(g.Allow), "order_limit", g.OrderLimit.String(), "spend_limit", g.SpendLimit.String(), "shared", rl.store != nil)
	return append(gates, gd), done, nil
}

// priceClient is the guard's client for GET /v1/products/{id}: signed like
// every other request, paced by the same rate limit, and bounded in time.
func priceClient(cfg config.Config, s *signer.Signer, limiter *ratelimit.Limiter) *http.Client {
	t := proxy.NewTransport()
	t.TLSClientConfig.RootCAs = upstream.RootsWith(cfg.UpstreamCAs)
	return &http.Client{
		Timeout:   cfg.UpstreamTimeout,
		Transport: &signingTransport{signer: s, next: t, limiter: limiter, base: strings.TrimSuffix(cfg.Upstream.EscapedPath(), "/")},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect would not be signed for its new path
		},
	}
}

// signingTransport signs each request for the path after base and waits
// for the rate limit's token first.
type signingTransport struct {
	signer  *signer.Signer
	next    http.RoundTripper
	limiter *ratelimit.Limiter // nil: no pacing
	base    string             // the upstream URL's path, not signed (spec §1.2)
}

func (t *signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.limiter != nil {
		d, err := t.limiter.Wait(req.Context())
		if err != nil {
			return nil, err
		}
		if !d.Allowed {
			return nil, fmt.Errorf("the API key's rate limit has no free request for %s", d.RetryAfter.Round(time.Second))
		}
	}
	path := strings.TrimPrefix(req.URL.EscapedPath(), t.base)
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	hs, err := t.signer.Sign(req.Method, path, signer.BodyHash(nil), time.Now())
	if err != nil {
		return nil, err
	}
	req = req.Clone(req.Context())
	hs.Apply(req.Header)
	return t.next.RoundTrip(req)
}
