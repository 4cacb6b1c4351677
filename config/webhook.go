package config

import (
	"net"
	"net/url"
	"strings"
	"time"
)

// Webhook configures the inbound webhook receiver: the API's signed events
// (order.paid, …) are verified once, here, and forwarded to the app. It is
// off while WebhookListen is empty.
type Webhook struct {
	WebhookListen          string        `env:"KH_WEBHOOK_LISTEN" help:"Address (host:port) of the webhook listener, which verifies the API's webhooks and forwards them to KH_WEBHOOK_FORWARD; unset turns it off. It is meant to face the internet through your ingress, and never signs anything."`
	WebhookSecret          string        `env:"KH_WEBHOOK_SECRET" help:"Secret that signs the API's webhooks. Set this or KH_WEBHOOK_SECRET_FILE when KH_WEBHOOK_LISTEN is set."`
	WebhookSecretFile      string        `env:"KH_WEBHOOK_SECRET_FILE" help:"File holding the webhook secret (one trailing newline ignored); read again when it changes, e.g. a rotated Kubernetes secret."`
	WebhookForward         *url.URL      `env:"KH_WEBHOOK_FORWARD" help:"URL of the app's webhook handler, e.g. http://127.0.0.1:3000/hooks/kernelhost; every verified webhook is POSTed there, whatever path it arrived on. Required when KH_WEBHOOK_LISTEN is set."`
	WebhookSignatureHeader string        `env:"KH_WEBHOOK_SIGNATURE_HEADER" envDefault:"KH-Webhook-Signature" help:"Header that carries the webhook signature (t=<unix>,v1=<hex>). The API's docs do not name it; the default is the emulator's, Stripe-Signature works too."`
	WebhookTolerance       time.Duration `env:"KH_WEBHOOK_TOLERANCE" envDefault:"5m" help:"How far a webhook's signed timestamp may lie from khproxy's clock, either way; older or newer ones are refused as replays."`
	WebhookForwardTimeout  time.Duration `env:"KH_WEBHOOK_FORWARD_TIMEOUT" envDefault:"10s" help:"How long the app may take to answer one forwarded webhook; after that the sender gets 504 and retries."`
	// WebhookMaxInflightBytes bounds the webhook bodies held in memory at once.
	WebhookMaxInflightBytes int64 `env:"KH_WEBHOOK_MAX_INFLIGHT_BYTES" envDefault:"1048576" help:"Memory budget, in bytes, for the webhook bodies held at once, room taken as their bytes arrive. A delivery that finds no room within 2s gets 503 with Retry-After (the sender retries later); one larger than the budget gets 413."`
}

// webhookMaxBody is the webhook receiver's body limit (package webhook's
// DefaultMaxBodyBytes; config imports nothing of ours).
const webhookMaxBody = 1 << 20

// WebhookOn reports whether the webhook receiver is configured.
func (w *Webhook) WebhookOn() bool { return w.WebhookListen != "" }

// validate checks the webhook settings; listen is KH_LISTEN, which the
// webhook listener must not share (one faces the internet, the other must
// not), and admin KH_ADMIN_LISTEN, which it cannot share either.
func (w *Webhook) validate(v *validation, listen, admin string) {
	if !w.WebhookOn() {
		for _, s := range []struct {
			name string
			set  bool
		}{
			{"KH_WEBHOOK_SECRET", w.WebhookSecret != ""},
			{"KH_WEBHOOK_SECRET_FILE", w.WebhookSecretFile != ""},
			{"KH_WEBHOOK_FORWARD", w.WebhookForward != nil},
		} {
			if s.set {
				v.warn(s.name, "is set but KH_WEBHOOK_LISTEN is not: the webhook receiver is off")
			}
		}
		return
	}
	if _, port, err := net.SplitHostPort(w.WebhookListen); err != nil {
		v.fail("KH_WEBHOOK_LISTEN", "must be host:port, like :8443: %w", err)
	} else if port != "0" && port == portOf(listen) {
		v.fail("KH_WEBHOOK_LISTEN", "must not use KH_LISTEN's port %s: the webhook listener faces the internet, the signing one must not", port)
	} else if port != "0" && port == portOf(admin) {
		v.fail("KH_WEBHOOK_LISTEN", "must not use KH_ADMIN_LISTEN's port %s (set KH_ADMIN_LISTEN to another port, or empty to turn it off)", port)
	}
	switch {
	case w.WebhookSecret != "" && w.WebhookSecretFile != "":
		v.fail("KH_WEBHOOK_SECRET", "set either KH_WEBHOOK_SECRET or KH_WEBHOOK_SECRET_FILE, not both")
	case w.WebhookSecret == "" && w.WebhookSecretFile == "":
		v.fail("KH_WEBHOOK_SECRET", "required when KH_WEBHOOK_LISTEN is set: set KH_WEBHOOK_SECRET or KH_WEBHOOK_SECRET_FILE")
	}
	switch u := w.WebhookForward; {
	case u == nil:
		v.fail("KH_WEBHOOK_FORWARD", "required when KH_WEBHOOK_LISTEN is set: the URL of the app's webhook handler")
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.fail("KH_WEBHOOK_FORWARD", "must be an absolute http:// or https:// URL, got %q", u.Redacted())
	case u.Fragment != "" || u.User != nil:
		v.fail("KH_WEBHOOK_FORWARD", "must not carry a fragment or user info")
	}
	if !validHeaderName(w.WebhookSignatureHeader) {
		v.fail("KH_WEBHOOK_SIGNATURE_HEADER", "must be an HTTP header name (letters, digits and -), got %q", w.WebhookSignatureHeader)
	}
	if w.WebhookTolerance <= 0 {
		v.fail("KH_WEBHOOK_TOLERANCE", "must be positive, got %s", w.WebhookTolerance)
	} else if w.WebhookTolerance > time.Hour {
		v.warn("KH_WEBHOOK_TOLERANCE", "over an hour: a captured webhook can be replayed that long after it was sent (only the last deliveries are remembered)")
	}
	if w.WebhookForwardTimeout <= 0 {
		v.fail("KH_WEBHOOK_FORWARD_TIMEOUT", "must be positive, got %s", w.WebhookForwardTimeout)
	}
	switch {
	case w.WebhookMaxInflightBytes <= 0:
		v.fail("KH_WEBHOOK_MAX_INFLIGHT_BYTES", "must be a positive number of bytes, got %d", w.WebhookMaxInflightBytes)
	case w.WebhookMaxInflightBytes < webhookMaxBody:
		v.warn("KH_WEBHOOK_MAX_INFLIGHT_BYTES", "is below the webhook body limit (1048576 bytes): larger deliveries get 413")
	}
}

// validHeaderName reports whether s is an RFC 9110 token, as a header name
// must be.
func validHeaderName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		return !alnum && !strings.ContainsRune("!#$%&'*+-.^_`|~", r)
	})
}
