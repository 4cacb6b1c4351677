package config_test

import (
	"net/url"
	"reflect"
	"testing"
	"time"

	"khproxy/config"
)

// webhookEnv is a valid environment with the webhook receiver on, changed
// by kv pairs as environ does.
func webhookEnv(kv ...string) []string {
	return environ(append([]string{
		"KH_WEBHOOK_LISTEN", ":8443",
		"KH_WEBHOOK_SECRET", "whsec_s3cr3t",
		"KH_WEBHOOK_FORWARD", "http://127.0.0.1:3000/hooks/kernelhost",
	}, kv...)...)
}

func TestLoadWebhook(t *testing.T) {
	c, warns, err := config.Load(webhookEnv("KH_WEBHOOK_SIGNATURE_HEADER", "Stripe-Signature", "KH_WEBHOOK_TOLERANCE", "2m"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings = %v, want none", warns)
	}
	want := config.Webhook{
		WebhookListen:          ":8443",
		WebhookSecret:          "whsec_s3cr3t",
		WebhookForward:         &url.URL{Scheme: "http", Host: "127.0.0.1:3000", Path: "/hooks/kernelhost"},
		WebhookSignatureHeader: "Stripe-Signature",
		WebhookTolerance:       2 * time.Minute,
		WebhookForwardTimeout:  10 * time.Second,

		WebhookMaxInflightBytes: 1 << 20,
	}
	if !reflect.DeepEqual(c.Webhook, want) {
		t.Errorf("Webhook =\n%+v\nwant\n%+v", c.Webhook, want)
	}
	if !c.WebhookOn() {
		t.Error("WebhookOn = false")
	}
	if c, _, _ := config.Load(environ()); c.WebhookOn() {
		t.Error("the receiver is on by default")
	}
}

func TestWebhookBudgetBadValues(t *testing.T) {
	for _, tt := range []struct {
		name, value string
	}{
		{"zero", "0"},
		{"negative", "-1"},
		{"with unit", "1MiB"},
		{"not a number", "lots"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantErrorNaming(t, webhookEnv("KH_WEBHOOK_MAX_INFLIGHT_BYTES", tt.value), "KH_WEBHOOK_MAX_INFLIGHT_BYTES")
		})
	}
	_, warns, err := config.Load(webhookEnv("KH_WEBHOOK_MAX_INFLIGHT_BYTES", "65536"))
	if err != nil || len(warns) != 1 || warns[0].Var != "KH_WEBHOOK_MAX_INFLIGHT_BYTES" {
		t.Errorf("a budget below the body limit: %v, warnings %+v; want one warning naming it", err, warns)
	}
}
