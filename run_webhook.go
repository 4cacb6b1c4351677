package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"

	"khproxy/config"
	"khproxy/internal/bytebudget"
	"khproxy/internal/httpserve"
	"khproxy/webhook"
)

// webhookServer builds the webhook listener when KH_WEBHOOK_LISTEN is set,
// and returns nil when it is not. The server copies like, the signing
// listener's, so that both have the same timeouts and connection bounds
// (KH_READ_TIMEOUT, KH_MAX_CONNS); the bodies it holds have a memory budget
// of their own, KH_WEBHOOK_MAX_INFLIGHT_BYTES, so that deliveries from the
// internet cannot take the room of the app's requests, nor the other way
// round. Deliveries are counted by outcome on reg.
func webhookServer(cfg config.Config, log *slog.Logger, like httpserve.Server, reg prometheus.Registerer) (*httpserve.Server, error) {
	if !cfg.WebhookOn() {
		return nil, nil
	}
	log = log.With("component", "webhook")
	secret, err := loadSecret(cfg.WebhookSecret, cfg.WebhookSecretFile, "KH_WEBHOOK_SECRET", "verifying webhooks", log)
	if err != nil {
		return nil, err
	}
	rc := &webhook.Receiver{
		Secret:    secret,
		Header:    cfg.WebhookSignatureHeader,
		Tolerance: cfg.WebhookTolerance,
		Budget:    bytebudget.New(cfg.WebhookMaxInflightBytes),
		Next:      &webhook.Forwarder{URL: cfg.WebhookForward, Timeout: cfg.WebhookForwardTimeout, Logger: log},
		Logger:    log,
	}
	m, err := webhook.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	rc.OnOutcome = m.Outcome
	ln, err := net.Listen("tcp", cfg.WebhookListen)
	if err != nil {
		return nil, fmt.Errorf("KH_WEBHOOK_LISTEN: %w", err)
	}
	// The forward URL's query may hold the app's token: not logged.
	app := url.URL{Scheme: cfg.WebhookForward.Scheme, Host: cfg.WebhookForward.Host, Path: cfg.WebhookForward.Path}
	log.Info("webhook receiver listening", "addr", ln.Addr().String(), "forward", app.String(),
		"header", cfg.WebhookSignatureHeader, "tolerance", cfg.WebhookTolerance, "max_inflight_bytes", cfg.WebhookMaxInflightBytes)
	s := like
	s.Name, s.Listener, s.Handler = "webhook", ln, rc
	return &s, nil
}
