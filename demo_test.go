package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

// TestDemoEndToEnd starts `khproxy demo` with KH_EMULATOR_LISTEN, follows
// its banner: lists products, places an order and watches it go through
// the emulator's lifecycle as the banner says (pending, paid, provisioning,
// active), fetches the invoice PDF, runs `khproxy check` with the banner's
// export lines, and stops it.
func TestDemoEndToEnd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emuAddr := closedAddr(t) // a free port for KH_EMULATOR_LISTEN
	stdout, stderr := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	errc := make(chan error, 1)
	env := []string{"KH_LISTEN=127.0.0.1:0", "KH_LOG_FORMAT=json", "KH_SECRET=ignored-by-demo", "KH_EMULATOR_LISTEN=" + emuAddr}
	go func() { errc <- run(ctx, []string{"demo"}, env, stdout, stderr) }()
	addr := waitListening(t, stderr, errc)
	base := "http://" + addr
	// The banner follows the log line that waitListening reads.
	testutil.WaitFor(t, "the banner", func() bool { return strings.Contains(stdout.String(), "Ctrl-C stops it.") })
	banner := stdout.String()

	var urls []string
	for _, m := range regexp.MustCompile(`curl -s (?:-X POST )?(\S+)`).FindAllStringSubmatch(banner, -1) {
		urls = append(urls, m[1])
	}
	if len(urls) < 4 || !strings.HasPrefix(urls[0], base) {
		t.Fatalf("banner curl commands %q do not use %s:\n%s", urls, base, banner)
	}
	for _, want := range []string{"all scopes", "read-only", "Timings are the emulator's, not the API's", `"pending"`, "1s later", `"provisioning"`,
		"2s after that", `"active"`, "retried after 100ms, 300ms and 1s", "throwaway", "http://" + emuAddr + "/__emulator/"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}
	if strings.Contains(banner, "ignored-by-demo") {
		t.Error("the banner prints the user's own KH_SECRET")
	}

	get := func(url string) (int, string, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	status := func(url string) string {
		t.Helper()
		code, _, body := get(url)
		var v struct{ Status string }
		if code != 200 || json.Unmarshal(body, &v) != nil {
			return fmt.Sprintf("%d %s", code, body)
		}
		return v.Status
	}
	if code, _, body := get(base + "/v1/products"); code != 200 || !strings.Contains(string(body), `"id":42`) {
		t.Fatalf("products: %d %s", code, body)
	}
	resp, err := http.Post(base+"/v1/orders", "application/json", strings.NewReader(`{"product_id":42,"billing_cycle":"monthly"}`))
	if err != nil {
		t.Fatal(err)
	}
	var order struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
	}
	json.NewDecoder(resp.Body).Decode(&order)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Idempotency-Key") == "" || order.Status != "pending" {
		t.Fatalf("order: status %d, Idempotency-Key %q, order status %q; want 201 pending", resp.StatusCode, resp.Header.Get("Idempotency-Key"), order.Status)
	}
	orderURL := fmt.Sprintf("%s/v1/orders/%d", base, order.ID)
	if got := status(orderURL); got != "pending" {
		t.Errorf("order read back at once: %s, want pending", got)
	}
	// The lifecycle the banner names: paid after a second, the service
	// provisioning, then active.
	// Polled slowly: the key's rate limit (burst 20) must leave room for
	// the rest of the test.
	pollEvery(t, "the order paid", func() bool { return status(orderURL) == "paid" })
	if got := status(base + "/v1/services/5001"); got != "provisioning" {
		t.Errorf("service right after payment: %s, want provisioning", got)
	}
	pollEvery(t, "the service active", func() bool { return status(base+"/v1/services/5001") == "active" })
	// The webhooks arrived as it happened, in order.
	testutil.WaitFor(t, "service.provisioned printed", func() bool { return strings.Contains(stdout.String(), "webhook service.provisioned") })
	out := stdout.String()
	if p, s := strings.Index(out, "webhook order.paid"), strings.Index(out, "webhook service.provisioned"); p < 0 || p > s {
		t.Errorf("order.paid is not printed before service.provisioned:\n%s", out)
	}

	// Every command the banner suggests to the proxy works after one order
	// (TestDemoPrintsWebhooks tries the webhook one).
	for _, u := range urls {
		if strings.HasSuffix(u, "/v1/orders") || !strings.HasPrefix(u, base) {
			continue
		}
		code, ctype, body := get(u)
		if code != 200 {
			t.Errorf("banner URL %s: %d %s", u, code, body)
		}
		if strings.HasSuffix(u, "/pdf") && (ctype != "application/pdf" || !strings.HasPrefix(string(body), "%PDF-")) {
			t.Errorf("invoice: %s, %q", ctype, body[:min(len(body), 8)])
		}
	}

	// khproxy check with the banner's export lines as the whole environment.
	exports := bannerExports(banner)
	if !strings.Contains(strings.Join(exports, " "), "KH_UPSTREAM=http://"+emuAddr+"/cp/kh_reseller_api") {
		t.Errorf("the banner's exports %q do not name the emulator at KH_EMULATOR_LISTEN %s", exports, emuAddr)
	}
	var checkOut strings.Builder
	if err := run(context.Background(), []string{"check"}, exports, &checkOut, io.Discard); err != nil {
		t.Errorf("check with the demo's exports %q: %v\n%s", exports, err, checkOut.String())
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("demo ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop")
	}
}

// pollEvery calls cond every 300ms until it holds, for at most 10s.
func pollEvery(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(300 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// bannerExports returns the NAME=value of each "export" line of a banner.
func bannerExports(banner string) []string {
	var env []string
	for line := range strings.SplitSeq(banner, "\n") {
		if kv, ok := strings.CutPrefix(strings.TrimSpace(line), "export "); ok {
			kv, _, _ = strings.Cut(kv, " ") // drop a trailing comment
			env = append(env, kv)
		}
	}
	return env
}

// TestDemoSignedPathFull: with KH_SIGNED_PATH=full the demo's emulator
// verifies the full path, so the demo works, and the banner's exports say so.
func TestDemoSignedPathFull(t *testing.T) {
	base, stdout, stop := startDemo(t, "KH_SIGNED_PATH=full")
	defer stop()
	if !strings.Contains(stdout.String(), "export KH_SIGNED_PATH=full") || strings.Contains(stdout.String(), "Webhooks are off") {
		t.Errorf("the banner does not export KH_SIGNED_PATH=full, or webhooks are off:\n%s", stdout)
	}
	resp, err := http.Get(base + "/v1/me")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/me: %d", resp.StatusCode)
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"check"}, bannerExports(stdout.String()), &out, io.Discard); err != nil {
		t.Errorf("check: %v\n%s", err, out.String())
	}
}

func TestDemoBadEmulatorListen(t *testing.T) {
	err := run(context.Background(), []string{"demo"}, []string{"KH_EMULATOR_LISTEN=8081"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "KH_EMULATOR_LISTEN") {
		t.Errorf("demo with KH_EMULATOR_LISTEN=8081: %v, want an error naming it", err)
	}
}

func TestDemoRefusesArguments(t *testing.T) {
	if err := run(context.Background(), []string{"demo", "extra"}, nil, io.Discard, io.Discard); err == nil {
		t.Error("demo with arguments succeeded")
	}
}

// TestDemoREADMEAgrees: the README's quick start tells the demo's flow with
// the demo's own timings and settings, so that the two cannot drift apart.
func TestDemoREADMEAgrees(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, quick, _ := strings.Cut(string(b), "## Quick start\n")
	quick, _, _ = strings.Cut(quick, "\n## ")
	words := map[time.Duration]string{time.Second: "about a second later", 2 * time.Second: "two seconds after that", 3 * time.Second: "three seconds after that"}
	for _, want := range []string{
		"`pending`", "`provisioning`", "`active`", "`order.paid`", "`service.provisioned`",
		words[demoLifecycle.PaymentDelay], words[demoLifecycle.ProvisionDelay],
		"timings are the emulator's", "`KH_EMULATOR_LISTEN`", "`export KH_KEY=...`", "throwaway",
	} {
		if want == "" || !strings.Contains(quick, want) {
			t.Errorf("the README's quick start lacks %q (the demo's payment delay %s, provisioning %s)", want, demoLifecycle.PaymentDelay, demoLifecycle.ProvisionDelay)
		}
	}
}
