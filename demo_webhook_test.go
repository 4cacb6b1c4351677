package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

// startDemo runs `khproxy demo` with env added and returns, once its banner
// is out, the proxy's base URL, its output and a stop function that checks
// it ends cleanly.
func startDemo(t *testing.T, env ...string) (string, *testutil.SyncBuffer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	errc := make(chan error, 1)
	env = append([]string{"KH_LISTEN=127.0.0.1:0", "KH_LOG_FORMAT=json"}, env...)
	go func() { errc <- run(ctx, []string{"demo"}, env, stdout, stderr) }()
	addr := waitListening(t, stderr, errc)
	// The banner follows the log line that waitListening reads.
	testutil.WaitFor(t, "the banner", func() bool { return strings.Contains(stdout.String(), "Ctrl-C stops it.") })
	stop := func() {
		t.Helper()
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("demo ended with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("demo did not stop")
		}
		if t.Failed() {
			t.Logf("demo log:\n%s", stderr)
		}
	}
	t.Cleanup(cancel)
	return "http://" + addr, stdout, stop
}

// demoOrder places an order through the demo's proxy and returns its id.
func demoOrder(t *testing.T, base string) int64 {
	t.Helper()
	resp, err := http.Post(base+"/v1/orders", "application/json", strings.NewReader(testutil.OrderBody))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var order struct{ ID int64 }
	if err := json.NewDecoder(resp.Body).Decode(&order); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("order: %d %v", resp.StatusCode, err)
	}
	return order.ID
}

// TestDemoPrintsWebhooks: the demo's banner tells about webhooks, an order's
// events are printed once each, verified, and a forged one is refused.
func TestDemoPrintsWebhooks(t *testing.T) {
	t.Parallel()
	base, stdout, stop := startDemo(t)
	defer stop()
	banner := stdout.String()
	if !strings.Contains(banner, "stripe listen --forward-to") || !strings.Contains(banner, "KH-Webhook-Signature") || !strings.Contains(banner, "prints the event here") {
		t.Errorf("the banner does not explain webhooks:\n%s", banner)
	}
	id := demoOrder(t, base)
	lines := map[string]*regexp.Regexp{
		"order.paid":          regexp.MustCompile(fmt.Sprintf(`(?m)^\S+ webhook order\.paid +evt_\w+ id=%d status=paid \(verified\)$`, id)),
		"service.provisioned": regexp.MustCompile(`(?m)^\S+ webhook service\.provisioned +evt_\w+ id=\d+ status=\w+ \(verified\)$`),
		"invoice.created":     regexp.MustCompile(`(?m)^\S+ webhook invoice\.created +evt_\w+ id=\d+ .*\(verified\)$`),
	}
	testutil.WaitFor(t, "three printed events", func() bool {
		for _, re := range lines {
			if !re.MatchString(stdout.String()) {
				return false
			}
		}
		return true
	})
	for typ, re := range lines {
		if n := len(re.FindAllString(stdout.String(), -1)); n != 1 {
			t.Errorf("%s printed %d times, want once:\n%s", typ, n, stdout)
		}
	}

	forged := regexp.MustCompile(`curl -s -X POST (\S+) -d '(.*)'`).FindStringSubmatch(banner)
	if forged == nil {
		t.Fatalf("no forged-webhook example in the banner:\n%s", banner)
	}
	req, _ := http.NewRequest(http.MethodPost, forged[1], strings.NewReader(forged[2]))
	resp, body := testutil.Do(t, http.DefaultClient, req)
	if p := testutil.Problem(t, resp, body, http.StatusBadRequest); p["reason"] != "no_signature" {
		t.Errorf("forged webhook: %v", p)
	}
}

// TestDemoForwardsWebhooks: with KH_WEBHOOK_FORWARD set, the demo's
// webhooks go to that app instead of the output.
func TestDemoForwardsWebhooks(t *testing.T) {
	t.Parallel()
	app := &hookApp{}
	appSrv := httptest.NewServer(app)
	defer appSrv.Close()
	base, stdout, stop := startDemo(t, "KH_WEBHOOK_FORWARD="+appSrv.URL+"/hooks/kernelhost")
	defer stop()
	if !strings.Contains(stdout.String(), "forwards the event to "+appSrv.URL+"/hooks/kernelhost") {
		t.Errorf("the banner does not name the app:\n%s", stdout)
	}
	id := demoOrder(t, base)
	testutil.WaitFor(t, "three forwarded events", func() bool { return len(app.got()) == 3 })
	paid := 0
	for _, ev := range app.got() {
		if ev.verified != "true" {
			t.Errorf("%s not marked verified", ev.Type)
		}
		if ev.Type == "order.paid" && ev.Data.ID == id {
			paid++
		}
	}
	if paid != 1 {
		t.Errorf("order.paid for order %d arrived %d times, want once", id, paid)
	}
	if strings.Contains(stdout.String(), " webhook order.paid") {
		t.Errorf("events printed although forwarded:\n%s", stdout)
	}
}
