package config_test

import (
	"net/url"
	"reflect"
	"strings"
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

func TestLoadWebhookErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"listen set but empty", webhookEnv("KH_WEBHOOK_LISTEN", ""), "KH_WEBHOOK_LISTEN"},
		{"listen without port", webhookEnv("KH_WEBHOOK_LISTEN", "0.0.0.0"), "KH_WEBHOOK_LISTEN"},
		{"listen on KH_LISTEN's port", webhookEnv("KH_LISTEN", "127.0.0.1:8080", "KH_WEBHOOK_LISTEN", ":8080"), "KH_WEBHOOK_LISTEN"},
		{"no secret", webhookEnv("KH_WEBHOOK_SECRET", "<unset>"), "KH_WEBHOOK_SECRET"},
		{"both secrets", webhookEnv("KH_WEBHOOK_SECRET_FILE", "/x"), "KH_WEBHOOK_SECRET_FILE"},
		{"no forward", webhookEnv("KH_WEBHOOK_FORWARD", "<unset>"), "KH_WEBHOOK_FORWARD"},
		{"forward relative", webhookEnv("KH_WEBHOOK_FORWARD", "/hooks"), "KH_WEBHOOK_FORWARD"},
		{"forward ftp", webhookEnv("KH_WEBHOOK_FORWARD", "ftp://app/hooks"), "KH_WEBHOOK_FORWARD"},
		{"forward with user info", webhookEnv("KH_WEBHOOK_FORWARD", "http://u:s3cr3t@app/hooks"), "KH_WEBHOOK_FORWARD"},
		{"forward unparsable", webhookEnv("KH_WEBHOOK_FORWARD", "http://app:port/"), "KH_WEBHOOK_FORWARD"},
		{"header with space", webhookEnv("KH_WEBHOOK_SIGNATURE_HEADER", "Stripe Signature"), "KH_WEBHOOK_SIGNATURE_HEADER"},
		{"header with colon", webhookEnv("KH_WEBHOOK_SIGNATURE_HEADER", "Stripe-Signature:"), "KH_WEBHOOK_SIGNATURE_HEADER"},
		{"header non-ASCII", webhookEnv("KH_WEBHOOK_SIGNATURE_HEADER", "Signatür"), "KH_WEBHOOK_SIGNATURE_HEADER"},
		{"tolerance not a duration", webhookEnv("KH_WEBHOOK_TOLERANCE", "300"), "KH_WEBHOOK_TOLERANCE"},
		{"tolerance zero", webhookEnv("KH_WEBHOOK_TOLERANCE", "0s"), "KH_WEBHOOK_TOLERANCE"},
		{"tolerance negative", webhookEnv("KH_WEBHOOK_TOLERANCE", "-5m"), "KH_WEBHOOK_TOLERANCE"},
		{"forward timeout zero", webhookEnv("KH_WEBHOOK_FORWARD_TIMEOUT", "0s"), "KH_WEBHOOK_FORWARD_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := config.Load(tt.env)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantVar) {
				t.Errorf("error %q does not name %s", err, tt.wantVar)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error %q quotes a secret", err)
			}
		})
	}
}

func TestLoadWebhookWarnings(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"secret without listener", environ("KH_WEBHOOK_SECRET", "whsec_x"), "KH_WEBHOOK_SECRET"},
		{"forward without listener", environ("KH_WEBHOOK_FORWARD", "http://127.0.0.1:3000/"), "KH_WEBHOOK_FORWARD"},
		{"tolerance over an hour", webhookEnv("KH_WEBHOOK_TOLERANCE", "2h"), "KH_WEBHOOK_TOLERANCE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, warns, err := config.Load(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 1 || warns[0].Var != tt.wantVar {
				t.Errorf("warnings = %+v, want one for %s", warns, tt.wantVar)
			}
		})
	}
}
