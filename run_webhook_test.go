package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"khproxy/config"
	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/internal/testutil"
	"khproxy/webhook"
)

// hookApp is an app's webhook handler: it records each event it is given.
type hookApp struct {
	mu     sync.Mutex
	events []hookEvent
}

type hookEvent struct {
	Type     string
	Data     struct{ ID int64 }
	verified string
	path     string
}

func (a *hookApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev hookEvent
	_ = json.NewDecoder(r.Body).Decode(&ev)
	ev.verified, ev.path = r.Header.Get("KH-Webhook-Verified"), r.URL.Path
	a.mu.Lock()
	a.events = append(a.events, ev)
	a.mu.Unlock()
}

func (a *hookApp) got() []hookEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]hookEvent(nil), a.events...)
}

// countDelivered returns how many of emu's webhook deliveries succeeded.
func countDelivered(emu *emulator.Emulator) int {
	n := 0
	for _, d := range emu.WebhookDeliveries() {
		if d.Delivered {
			n++
		}
	}
	return n
}

// TestServeWebhooks runs khproxy as in production, in front of the
// emulator, with the webhook receiver on: the app registers khproxy's webhook
// listener and places an order, both through the signing proxy, and the
// order's events come back through the receiver, verified, each once.
func TestServeWebhooks(t *testing.T) {
	emu, key, secret := emulatortest.New(t, func(o *emulator.Options) {
		o.WebhookHeader = "Stripe-Signature"
		o.AllowInsecureWebhooks = true // khproxy's webhook listener is on loopback
	})
	api := httptest.NewServer(emu)
	t.Cleanup(api.Close)
	app := &hookApp{}
	appSrv := httptest.NewServer(app)
	t.Cleanup(appSrv.Close)
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(emu.WebhookSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &testutil.SyncBuffer{}
	env := []string{"KH_KEY=" + key, "KH_SECRET=" + secret, "KH_UPSTREAM=" + api.URL + emulator.DefaultBasePath,
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=", "KH_SHUTDOWN_DELAY=0s", "KH_LOG_FORMAT=json",
		"KH_WEBHOOK_LISTEN=127.0.0.1:0", "KH_WEBHOOK_SECRET_FILE=" + secretFile,
		"KH_WEBHOOK_FORWARD=" + appSrv.URL + "/hooks/kernelhost", "KH_WEBHOOK_SIGNATURE_HEADER=Stripe-Signature"}
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, env, io.Discard, logs) }()
	proxyAddr := waitListening(t, logs, errc)
	hookAddr := waitLogAddr(t, logs, errc, "webhook receiver listening")

	send := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+proxyAddr+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if resp, b := testutil.Do(t, http.DefaultClient, req); resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	send("PUT", "/v1/webhooks", `{"url":"http://`+hookAddr+`/anything"}`)
	send("POST", "/v1/orders", testutil.OrderBody)

	testutil.WaitFor(t, "three delivered events", func() bool { return countDelivered(emu) == 3 })
	types := map[string]int{}
	for _, ev := range app.got() {
		types[ev.Type]++
		if ev.verified != "true" || ev.path != "/hooks/kernelhost" {
			t.Errorf("%s: verified %q, path %q", ev.Type, ev.verified, ev.path)
		}
	}
	for _, typ := range []string{"order.paid", "service.provisioned", "invoice.created"} {
		if types[typ] != 1 {
			t.Errorf("%s arrived %d times, want once", typ, types[typ])
		}
	}

	cancel()
	if err := <-errc; err != nil {
		t.Errorf("run = %v", err)
	}
	for _, s := range []string{secret, emu.WebhookSecret()} {
		if strings.Contains(logs.String(), s) {
			t.Error("the log contains a secret")
		}
	}
}

func TestRunWebhookErrors(t *testing.T) {
	dir := t.TempDir()
	spaced := filepath.Join(dir, "spaced")
	if err := os.WriteFile(spaced, []byte("two words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"KH_KEY=" + testKey, "KH_SECRET=" + testSecret, "KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=",
		"KH_WEBHOOK_LISTEN=127.0.0.1:0", "KH_WEBHOOK_FORWARD=http://127.0.0.1:9/"}
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"secret with a space", []string{"KH_WEBHOOK_SECRET=two words"}, "KH_WEBHOOK_SECRET"},
		{"secret file missing", []string{"KH_WEBHOOK_SECRET_FILE=" + filepath.Join(dir, "nope")}, "KH_WEBHOOK_SECRET_FILE"},
		{"secret file with a space", []string{"KH_WEBHOOK_SECRET_FILE=" + spaced}, "KH_WEBHOOK_SECRET_FILE"},
		{"address cannot be bound", []string{"KH_WEBHOOK_SECRET=whsec_x", "KH_WEBHOOK_LISTEN=256.0.0.1:1"}, "KH_WEBHOOK_LISTEN"},
		{"no forward", []string{"KH_WEBHOOK_SECRET=whsec_x", "KH_WEBHOOK_FORWARD="}, "KH_WEBHOOK_FORWARD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // should it start, stop at once
			err := run(ctx, nil, append(append([]string{}, base...), tt.env...), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run = %v, want an error naming %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "two words") {
				t.Errorf("run = %v, quotes the secret", err)
			}
		})
	}
}

// TestWebhookHeaderDefault: config (which imports nothing of ours) spells
// the default header itself; it must stay the receiver's and the emulator's.
func TestWebhookHeaderDefault(t *testing.T) {
	for _, v := range config.Vars() {
		if v.Name == "KH_WEBHOOK_SIGNATURE_HEADER" {
			if v.Default != webhook.DefaultHeader {
				t.Errorf("default %q, receiver's %q", v.Default, webhook.DefaultHeader)
			}
			if v.Default != emulator.DefaultWebhookHeader {
				t.Errorf("default %q, emulator's %q", v.Default, emulator.DefaultWebhookHeader)
			}
			return
		}
	}
	t.Fatal("no KH_WEBHOOK_SIGNATURE_HEADER")
}
