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
	env := newEnv(t, func(o *Options) { o.AllowInsecureWebhooks = true })
	env.emu.hookBackoff = time.Millisecond
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
	d := env.emu.WebhookDeliveries()[0]
	if !d.Delivered || d.Attempts != 3 || d.StatusCode != 200 || d.Type != "order.paid" {
		t.Errorf("first delivery: %+v", d)
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
		})
	}
	for _, b := range []string{`{}`, `{"url":5}`, `{"url":null,"x":1}`, `nope`} {
		resp, body := env.do(t, rq{method: "PUT", path: "/v1/webhooks", body: b})
		wantProblem(t, resp, body, http.StatusBadRequest, codeValidation, "")
	}
}
