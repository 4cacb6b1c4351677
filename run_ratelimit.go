package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"khproxy/config"
	"khproxy/proxy"
	"khproxy/ratelimit"
	"khproxy/ratelimit/redisstore"
)

// rateLimiting is what the proxy gets from the KH_RATE_* and KH_REDIS_*
// settings: a limiter (nil when KH_RATE_LIMIT=off) and a retry memory (nil:
// the proxy's in-process one).
type rateLimiting struct {
	limiter *ratelimit.Limiter
	memory  proxy.RetryMemory
	flights proxy.FlightBoard
	close   func()
}

// apply puts the limiter and the memory into opts.
func (rl rateLimiting) apply(opts *proxy.Options) {
	opts.Limiter = rl.limiter
	opts.RetryMemory = rl.memory
	opts.Flights = rl.flights
}

// newRateLimiting builds the limiter and, with KH_REDIS_URL, shares it and
// the retry memory through Redis. An unreachable Redis is not an error:
// khproxy starts on its local state and uses Redis once it answers. The
// metrics go to reg (nil: none).
func newRateLimiting(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (rateLimiting, error) {
	rl := rateLimiting{close: func() {}}
	limit := ratelimit.Limit{Every: cfg.RateLimit.Every(), Burst: cfg.RateBurst}
	var (
		store  *redisstore.Store
		bucket ratelimit.Bucket
		outage *ratelimit.Outage
	)
	if cfg.RedisURL != nil {
		client, err := redisstore.NewClient(cfg.RedisURL.String(), cfg.RedisPasswordFile)
		if err != nil {
			return rl, fmt.Errorf("configuration:\nKH_REDIS_URL: %w", err)
		}
		rl.close = func() { _ = client.Close() }
		if store, err = redisstore.New(client, cfg.Key); err != nil {
			return rl, err
		}
		if outage, err = ratelimit.NewOutage(log, reg); err != nil {
			return rl, err
		}
		rl.memory = ratelimit.NewRetryMemory(cfg.IdempotencyWindow, store, outage)
		board := ratelimit.NewFlightBoard(store, outage, 0, 0, cfg.IdempotencyWindow)
		rl.flights = board
		rl.close = func() { board.Close(); _ = client.Close() }
		ctx, cancel := context.WithTimeout(context.Background(), ratelimit.OpTimeout)
		defer cancel()
		if err := store.Check(ctx); err != nil {
			log.Warn("Redis unreachable at start: using local rate limit, retry memory and requests in flight until it answers", "redis", cfg.RedisURL.Redacted(), "error", err)
		} else {
			log.Info("sharing the rate limit, the retry memory and the requests in flight through Redis", "redis", cfg.RedisURL.Redacted())
		}
	}
	if cfg.RateLimit.Off() {
		log.Info("rate limit off (KH_RATE_LIMIT=off): requests are not paced")
		return rl, nil
	}
	if store != nil {
		b, err := store.Bucket(limit)
		if err != nil {
			return rl, err
		}
		bucket = b
	}
	l, err := ratelimit.New(ratelimit.Options{
		Limit:      limit,
		MaxWait:    cfg.RateWait,
		Shared:     bucket,
		Outage:     outage,
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return rl, err
	}
	rl.limiter = l
	log.Info("pacing requests to the API key's rate limit", "rate", cfg.RateLimit.String(), "burst", cfg.RateBurst, "wait", cfg.RateWait.String(), "interval", limit.Every.Round(time.Millisecond).String())
	return rl, nil
}
