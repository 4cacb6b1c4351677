package emulator

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

type delivered struct {
	header http.Header
	body   []byte
}

// receiver is an httptest webhook receiver; the first failFirst requests
// get a 500.
func receiver(t *testing.T, failFirst int) (*httptest.Server, <-chan delivered) {
	t.Helper()
	ch := make(chan delivered, 32)
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		n++
		fail := n <= failFirst
		mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ch <- delivered{r.Header.Clone(), body}
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

// verifyStripe is the test's own check of "t=<unix>,v1=<hex>".
func verifyStripe(t *testing.T, secret, header string, body []byte) {
	t.Helper()
	var ts, v1 string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil || v1 == "" {
		t.Fatalf("malformed signature header %q", header)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	if got, want := v1, hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("v1: got %s, want %s", got, want)
	}
}

func TestWebhookDelivery(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.AllowInsecureWebhooks = true
		o.WebhookHeader = "X-Test-Signature"
		o.WebhookSecret = "whsec_test"
	})
	rcv, ch := receiver(t, 0)
	resp, body := env.do(t, rq{method: "PUT", path: "/v1/webhooks", body: `{"url":"` + rcv.URL + `/hook"}`})
	if resp.StatusCode != 200 || decode(t, body)["url"] != rcv.URL+"/hook" {
		t.Fatalf("PUT: status %d body %s", resp.StatusCode, body)
	}
	if got := decode(t, mustGet(t, env, "/v1/webhooks"))["url"]; got != rcv.URL+"/hook" {
		t.Errorf("GET url: %v", got)
	}
	order := env.order(t, "hooked")
	types := map[string]bool{}
	for i := 0; i < 3; i++ {
		select {
		case d := <-ch:
			verifyStripe(t, "whsec_test", d.header.Get("X-Test-Signature"), d.body)
			ev := decode(t, d.body)
			if !strings.HasPrefix(ev["id"].(string), "evt_") || ev["created"] == nil {
				t.Errorf("envelope: %s", d.body)
			}
			types[ev["type"].(string)] = true
			if ev["type"] == "order.paid" && ev["data"].(map[string]any)["id"] != order["id"] {
				t.Errorf("order.paid data: %v", ev["data"])
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d deliveries", i)
		}
	}
	for _, typ := range []string{"order.paid", "service.provisioned", "invoice.created"} {
		if !types[typ] {
			t.Errorf("no %s event", typ)
		}
	}
	testutil.WaitFor(t, "delivery log", func() bool { return len(env.emu.WebhookDeliveries()) == 3 })
	// Clearing works with null and "".
	for _, b := range []string{`{"url":null}`, `{"url":""}`} {
		resp, body := env.do(t, rq{method: "PUT", path: "/v1/webhooks", body: b})
		if resp.StatusCode != 200 || decode(t, body)["url"] != nil {
			t.Errorf("clear %s: status %d body %s", b, resp.StatusCode, body)
		}
	}
	env.order(t, "unhooked")
	time.Sleep(50 * time.Millisecond) // nothing should arrive
	if got := len(env.emu.WebhookDeliveries()); got != 3 {
		t.Errorf("deliveries after clearing: got %d, want 3", got)
	}
}

func TestWebhookRetry(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.AllowInsecureWebhooks = true
		o.WebhookRetries = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	})
	rcv, ch := receiver(t, 2)
	if resp, body := env.do(t, rq{method: "PUT", path: "/v1/webhooks", body: `{"url":"` + rcv.URL + `"}`}); resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	env.order(t, "retry")
	for i := 0; i < 3; i++ {
		select {
		case d := <-ch:
			verifyStripe(t, env.emu.WebhookSecret(), d.header.Get(DefaultWebhookHeader), d.body)
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d deliveries", i)
		}
	}
	testutil.WaitFor(t, "delivery log", func() bool { return len(env.emu.WebhookDeliveries()) == 3 })
	// Each delivery is retried on its own: two failed attempts, shared by
	// whichever events met them, and every event delivered once.
	attempts := 0
	for _, d := range env.emu.WebhookDeliveries() {
		if !d.Delivered || d.StatusCode != 200 {
			t.Errorf("delivery: %+v", d)
		}
		attempts += d.Attempts
	}
	if got, want := attempts, 3+2; got != want {
		t.Errorf("attempts: got %d, want %d", got, want)
	}
}

func TestWebhookURLVetting(t *testing.T) {
	env := newEnv(t, nil)
	env.emu.lookupIP = func(_ context.Context, host string) ([]string, error) {
		switch host {
		case "public.example":
			return []string{"93.184.215.14"}, nil
		case "internal.example":
			return []string{"93.184.215.14", "10.1.2.3"}, nil
		}
		return nil, errors.New("no such host")
	}
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://public.example/hook", true},
		{"https://93.184.215.14/hook", true},
		{"http://public.example/hook", false},
		{"https://10.0.0.1/", false},
		{"https://192.168.1.10/", false},
		{"https://127.0.0.1:8443/", false},
		{"https://[::1]/", false},
		{"https://169.254.169.254/latest", false},
		{"https://[fe80::1]/", false},
		{"https://0.0.0.0/", false},
		{"https://localhost/", false},
		{"https://internal.example/", false},
		{"https://nowhere.example/", false},
		{"https://user:pw@public.example/", false},
		{"ftp://public.example/", false},
		{"/relative", false},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			resp, body := env.do(t, rq{method: "PUT", path: "/v1/webhooks", body: `{"url":"` + tc.url + `"}`})
			if tc.ok {
				if resp.StatusCode != 200 {
					t.Fatalf("status %d body %s", resp.StatusCode, body)
				}
				return
			}
			p := wantProblem(t, resp, body, http.StatusBadRequest, codeValidation, "")
			if got := fieldOf(t, p); got != "url" {
				t.Errorf("field: got %q, want url", got)
			}
			// Every refusal names the switch for local receivers.
			if msg := p["errors"].([]any)[0].(map[string]any)["message"].(string); !strings.Contains(msg, "-allow-insecure-webhooks") {
				t.Errorf("message %q does not name -allow-insecure-webhooks", msg)
			}
		})
	}
	for _, b := range []string{`{}`, `{"url":5}`, `{"url":null,"x":1}`, `nope`} {
		resp, body := env.do(t, rq{method: "PUT", path: "/v1/webhooks", body: b})
		wantProblem(t, resp, body, http.StatusBadRequest, codeValidation, "")
	}
}

func TestWebhookEndpointsAreIndependent(t *testing.T) {
	// Two keys of one account, each with its own URL: one receiver hangs,
	// the other must still get every event at once.
	second := Key{ID: padKey("SECOND"), Secret: "second-secret", Scopes: AllScopes()}
	env := newEnv(t, func(o *Options) {
		o.AllowInsecureWebhooks = true
		o.Keys = append(o.Keys, second)
	})
	entered, release := make(chan struct{}, 8), make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	t.Cleanup(stuck.Close)
	t.Cleanup(func() { close(release) })
	good, ch := receiver(t, 0)
	for _, k := range []struct{ key, secret, url string }{{env.key, env.secret, stuck.URL}, {second.ID, second.Secret, good.URL}} {
		resp, body := env.do(t, rq{method: "PUT", path: "/v1/webhooks", body: `{"url":"` + k.url + `"}`, key: k.key, secret: k.secret})
		if resp.StatusCode != 200 {
			t.Fatalf("PUT: %d %s", resp.StatusCode, body)
		}
	}
	env.order(t, "two-endpoints")
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the hanging receiver was never called")
	}
	if got := types(events(t, env, ch, 3)); len(got) != 3 {
		t.Errorf("the healthy endpoint got %v", got)
	}
}

func TestWebhookRetrySchedule(t *testing.T) {
	tests := []struct {
		name    string
		retries []time.Duration
		want    int
	}{
		{"two retries", []time.Duration{time.Millisecond, 2 * time.Millisecond}, 3},
		{"none", []time.Duration{}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, func(o *Options) {
				o.AllowInsecureWebhooks = true
				o.WebhookRetries = tc.retries
			})
			var calls atomic.Int64
			down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(http.StatusServiceUnavailable)
			}))
			t.Cleanup(down.Close)
			env.do(t, rq{method: "PUT", path: "/v1/webhooks", body: `{"url":"` + down.URL + `"}`})
			env.order(t, "down")
			testutil.WaitFor(t, "given-up deliveries", func() bool { return len(env.emu.WebhookDeliveries()) == 3 })
			for _, d := range env.emu.WebhookDeliveries() {
				if d.Delivered || d.Attempts != tc.want || d.StatusCode != 503 || d.Error != "receiver answered 503" {
					t.Errorf("delivery: %+v", d)
				}
			}
			if got, want := calls.Load(), int64(3*tc.want); got != want {
				t.Errorf("receiver calls: got %d, want %d", got, want)
			}
			if n := env.emu.PendingWebhooks(); n != 0 {
				t.Errorf("%d still pending", n)
			}
		})
	}
}

func TestWebhookDuplicates(t *testing.T) {
	env, ch := hooked(t, func(o *Options) { o.Faults.DuplicateWebhooks = 1 })
	env.order(t, "dup")
	evs := events(t, env, ch, 4)
	ids := map[any]int{}
	for _, ev := range evs {
		ids[ev["id"]]++
	}
	if len(ids) != 3 {
		t.Errorf("4 deliveries carry %d distinct event ids, want 3 (one sent twice)", len(ids))
	}
	testutil.WaitFor(t, "delivery log", func() bool { return len(env.emu.WebhookDeliveries()) == 4 })
	dups := 0
	for _, d := range env.emu.WebhookDeliveries() {
		if d.Duplicate {
			dups++
		}
	}
	if dups != 1 || env.emu.Faults().DuplicateWebhooks != 0 {
		t.Errorf("%d deliveries marked Duplicate, %d left to duplicate", dups, env.emu.Faults().DuplicateWebhooks)
	}

	// Redeliver an event on purpose: same id and body, a fresh valid signature.
	first := env.emu.WebhookDeliveries()[0]
	n, err := env.emu.Redeliver(first.EventID)
	if err != nil || n != 1 {
		t.Fatalf("Redeliver = %d, %v", n, err)
	}
	again := events(t, env, ch, 1)[0]
	if again["id"] != first.EventID {
		t.Errorf("redelivered event %v, want %s", again["id"], first.EventID)
	}
	if _, err := env.emu.Redeliver("evt_NOPE"); !errors.Is(err, ErrUnknownEvent) {
		t.Errorf("Redeliver(unknown) = %v, want ErrUnknownEvent", err)
	}
}
