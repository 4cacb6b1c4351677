package webhook_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/internal/testutil"
	"khproxy/signer"
	"khproxy/webhook"
)

// emuClient calls the emulator directly, signing with package signer (which
// proxy/emulator_test.go holds to the emulator's own verifier).
type emuClient struct {
	base   string
	signer *signer.Signer
}

func (c *emuClient) do(t testing.TB, method, path, body string, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	hs, err := c.signer.Sign(method, path, signer.BodyHash([]byte(body)), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hs.Apply(req.Header)
	resp, b := testutil.Do(t, http.DefaultClient, req)
	return resp.StatusCode, b
}

// TestEmulatorWebhooksArriveOnce: the emulator, an independent sender, places
// an order; its three events reach the app through the Receiver, verified,
// each exactly once, under the default header and under Stripe's.
func TestEmulatorWebhooksArriveOnce(t *testing.T) {
	if webhook.DefaultHeader != emulator.DefaultWebhookHeader {
		t.Fatalf("DefaultHeader %q is not the emulator's %q", webhook.DefaultHeader, emulator.DefaultWebhookHeader)
	}
	for _, header := range []string{"", "Stripe-Signature"} {
		t.Run(cmp.Or(header, "default header"), func(t *testing.T) {
			testEmulatorWebhooks(t, header)
		})
	}
}

func testEmulatorWebhooks(t *testing.T, header string) {
	emu, key, secret := emulatortest.New(t, func(o *emulator.Options) {
		o.WebhookHeader = header
		o.AllowInsecureWebhooks = true // the receiver is on loopback
	})
	api := httptest.NewServer(emu)
	t.Cleanup(api.Close)

	app := newTestApp(t)
	appURL, _ := url.Parse(app.srv.URL + "/hooks/kernelhost")
	rcv := httptest.NewServer(&webhook.Receiver{
		Secret: signer.StaticSecret(emu.WebhookSecret()),
		Header: header,
		Next:   &webhook.Forwarder{URL: appURL},
	})
	t.Cleanup(rcv.Close)

	c := &emuClient{base: api.URL + emulator.DefaultBasePath, signer: &signer.Signer{Key: key, Secret: signer.StaticSecret(secret)}}
	if code, body := c.do(t, http.MethodPut, "/v1/webhooks", `{"url":"`+rcv.URL+`/kernelhost"}`, nil); code != http.StatusOK {
		t.Fatalf("PUT /v1/webhooks: %d %s", code, body)
	}
	code, body := c.do(t, http.MethodPost, "/v1/orders", testutil.OrderBody,
		http.Header{"Idempotency-Key": {"webhook-e2e-1"}})
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/orders: %d %s", code, body)
	}
	var order struct{ ID int64 }
	if err := json.Unmarshal(body, &order); err != nil || order.ID == 0 {
		t.Fatalf("order %s: %v", body, err)
	}

	// The emulator records a delivery once the receiver answered it.
	testutil.WaitFor(t, "three delivered events", func() bool {
		n := 0
		for _, d := range emu.WebhookDeliveries() {
			if d.Delivered {
				n++
			}
		}
		return n == 3
	})
	sent := map[string][]byte{}
	for _, d := range emu.WebhookDeliveries() {
		if d.Attempts != 1 {
			t.Errorf("%s took %d attempts, want 1", d.Type, d.Attempts)
		}
		sent[d.EventID] = d.Body
	}
	got := app.requests()
	if len(got) != 3 {
		t.Fatalf("app got %d requests, want 3", len(got))
	}
	var paid *received
	for i, g := range got {
		var ev struct {
			ID   string
			Type string
			Data struct{ ID int64 }
		}
		if err := json.Unmarshal(g.body, &ev); err != nil {
			t.Fatalf("event %s: %v", g.body, err)
		}
		if !bytes.Equal(g.body, sent[ev.ID]) {
			t.Errorf("%s: the app got other bytes than the emulator sent", ev.Type)
		}
		if g.header.Get(webhook.VerifiedHeader) != "true" || g.path != "/hooks/kernelhost" {
			t.Errorf("%s: verified %q, path %q", ev.Type, g.header.Get(webhook.VerifiedHeader), g.path)
		}
		delete(sent, ev.ID) // a second arrival of the same event fails below
		if ev.Type == "order.paid" {
			if ev.Data.ID != order.ID {
				t.Errorf("order.paid for order %d, want %d", ev.Data.ID, order.ID)
			}
			paid = &got[i]
		}
	}
	if len(sent) != 0 || paid == nil {
		t.Fatalf("events not received exactly once: missing %d, order.paid %v", len(sent), paid != nil)
	}

	// The emulator's own delivery, sent again, is a replay.
	name := cmp.Or(header, webhook.DefaultHeader)
	req, _ := http.NewRequest(http.MethodPost, rcv.URL+"/kernelhost", bytes.NewReader(paid.body))
	req.Header.Set(name, paid.header.Get(name))
	if resp, _ := testutil.Do(t, http.DefaultClient, req); resp.StatusCode != http.StatusOK {
		t.Errorf("replay: status %d, want 200", resp.StatusCode)
	}
	if n := len(app.requests()); n != 3 {
		t.Errorf("after the replay the app got %d requests, want 3", n)
	}
}
