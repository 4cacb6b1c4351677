package emulator

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"khproxy/emulator/webhooksend"
)

// The outbound webhook sender lives in emulator/webhooksend; this file is
// the glue: which URLs get an event, its id and body, the duplicate fault,
// and the Emulator's exported webhook API.

// FastWebhookRetries returns the retry waits the Go API uses when
// Options.WebhookRetries is nil: 100 ms, 300 ms, 1 s (four attempts within
// about 1.5 s), so that tests see retries without waiting.
func FastWebhookRetries() []time.Duration { return webhooksend.FastRetries() }

// ProductionWebhookRetries returns the retry waits "khproxy emulator" uses
// by default, growing like a production sender's: 1 m, 5 m, 30 m, 2 h,
// 6 h, 12 h, 24 h (eight attempts over about 45 hours).
func ProductionWebhookRetries() []time.Duration { return webhooksend.ProductionRetries() }

// ParseWebhookRetries reads a retry schedule as -webhook-retries takes it:
// "production", "fast", "none" (one attempt, no retries) or a
// comma-separated list of waits such as "1s,10s,1m".
func ParseWebhookRetries(s string) ([]time.Duration, error) { return webhooksend.ParseRetries(s) }

// WebhookDelivery is the outcome of one event sent to one URL, as kept for
// tests (the most recent 1000). Body is the exact JSON that was signed.
type WebhookDelivery = webhooksend.Delivery

// ErrUnknownEvent is returned by Redeliver for an event id that is not in
// the delivery log.
var ErrUnknownEvent = webhooksend.ErrUnknownEvent

// newWebhookSender starts e's sender from the validated options o.
func (e *Emulator) newWebhookSender(o Options) (*webhooksend.Sender, error) {
	secret := o.WebhookSecret
	if secret == "" {
		secret = "whsec_" + randomString(32, alphanumeric)
	}
	return webhooksend.New(webhooksend.Options{Secret: secret, Header: o.WebhookHeader,
		Headers: http.Header{HeaderEmulator: {"1"}}, Insecure: o.AllowInsecureWebhooks,
		Client: o.WebhookClient, Retries: o.WebhookRetries, Now: e.serverNow, Logger: e.log,
		// e.lookupIP, not its value now: tests replace it.
		Lookup: func(ctx context.Context, host string) ([]string, error) { return e.lookupIP(ctx, host) }})
}

type event struct {
	typ  string
	data any
}

// webhookURLsLocked returns the distinct webhook URLs of an account's
// keys; e.mu must be held.
func (e *Emulator) webhookURLsLocked(accountID string) []string {
	var urls []string
	for id, u := range e.hookURLs {
		if k, ok := e.auth.Get(id); ok && k.Account == accountID && u != "" && !containsString(urls, u) {
			urls = append(urls, u)
		}
	}
	return urls
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// sendEvents queues every event for every URL without blocking; while
// Faults.DuplicateWebhooks lasts, a delivery is queued twice. When too
// many deliveries are pending (or the emulator closed) the delivery is
// recorded as failed.
func (e *Emulator) sendEvents(urls []string, created time.Time, evs []event) {
	for _, ev := range evs {
		id := "evt_" + newULID(e.now())
		body, err := json.Marshal(map[string]any{"id": id, "type": ev.typ, "created": created.Unix(), "data": ev.data})
		if err != nil {
			continue // plain maps: unreachable
		}
		out := webhooksend.Event{ID: id, Type: ev.typ, Body: body}
		for _, u := range urls {
			e.hooks.Send(u, out, false)
			if e.takeDuplicate() {
				e.hooks.Send(u, out, true)
			}
		}
	}
}

// Redeliver sends a finished event again, on purpose, to every URL it was
// delivered (or attempted) to: same id, same body, a fresh signature.
// Receivers must be idempotent. It returns how many deliveries were
// queued, or ErrUnknownEvent when the event is not among the last 1000
// finished deliveries. Safe for concurrent use.
func (e *Emulator) Redeliver(eventID string) (int, error) { return e.hooks.Redeliver(eventID) }

// WebhookDeliveries returns the finished webhook deliveries (successful or
// given up), oldest first, at most the last 1000. Safe for concurrent use.
func (e *Emulator) WebhookDeliveries() []WebhookDelivery { return e.hooks.Deliveries() }

// PendingWebhooks returns how many deliveries are queued, in flight or
// waiting for a retry. Safe for concurrent use.
func (e *Emulator) PendingWebhooks() int { return e.hooks.Pending() }
