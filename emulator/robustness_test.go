package emulator

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

func TestRequestCountsStayBounded(t *testing.T) {
	env := newEnv(t, nil)
	for i := range 300 {
		req, _ := http.NewRequest(fmt.Sprintf("M%06d", i), env.srv.URL+DefaultBasePath+"/v1/products", nil)
		resp, err := env.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := env.emu.Requests()["method not allowed"]; got != 300 {
		t.Errorf(`Requests()["method not allowed"] = %d, want 300`, got)
	}
	if n := len(env.emu.Requests()); n > 5 {
		t.Errorf("Requests() has %d keys: client-chosen methods grow it", n)
	}
}

func TestConcurrentOrders(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.InitialBalance = 1_000_000 })
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if _, _, err := env.try(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: fmt.Sprintf("k-%d", i)}); err != nil {
				t.Error(err)
			}
		})
	}
	for range 50 {
		wg.Go(func() {
			if _, _, err := env.try(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "same"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := env.emu.OrderCount(); n != 51 {
		t.Errorf("%d orders, want 50 distinct keys + 1 shared", n)
	}
	bal, _ := env.emu.Balance("")
	if want := int64(1_000_000 - 51*999); bal != want {
		t.Errorf("balance = %d, want %d", bal, want)
	}
}

func TestOddInputNeverFails500(t *testing.T) {
	env := newEnv(t, nil)
	for _, p := range []string{"//v1/products", "/v1//products", "/v1/products/", "/v1/products/99999999999999999999",
		"/v1/services?page=-1", "/v1/services?page=99999999999999999999", "/v1/services?%zz",
		"/v1/services/0", "/v1/products/%34%32"} {
		resp, body, err := env.try(t, rq{path: p})
		if err != nil || resp.StatusCode >= 500 {
			t.Errorf("GET %s: %v %v %s", p, err, resp.StatusCode, body)
		}
	}
	for i, b := range []string{`{"product_id":1e400,"billing_cycle":"monthly"}`, `{"product_id":9223372036854775808,"billing_cycle":"monthly"}`,
		`[`, `null`, `{"config":{"os":1}}`, strings.Repeat("[", 20000)} {
		resp, body, err := env.try(t, rq{method: "POST", path: "/v1/orders", body: b, idem: fmt.Sprintf("w%d", i)})
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("order body %.30q: %v %v %s, want 400", b, err, resp.StatusCode, body)
		}
	}
}

func TestHeadHealthUnsigned(t *testing.T) {
	env := newEnv(t, nil)
	resp, _ := env.do(t, rq{method: "HEAD", path: "/v1/health", unsigned: true})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /v1/health = %d, want 200 like GET", resp.StatusCode)
	}
}

func TestWebhookFailureLogsNoURLQuery(t *testing.T) {
	var logs testutil.SyncBuffer
	env := newEnv(t, func(o *Options) {
		o.AllowInsecureWebhooks = true
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.WebhookRetries = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	})
	resp, body := env.do(t, rq{method: "PUT", path: "/v1/webhooks", body: `{"url":"http://127.0.0.1:1/hook?token=SUPERSECRET"}`})
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	env.order(t, "leak")
	testutil.WaitFor(t, "failed delivery", func() bool { return strings.Contains(logs.String(), "webhook delivery failed") })
	if strings.Contains(logs.String(), "SUPERSECRET") {
		t.Errorf("the webhook URL's query was logged: %s", logs.String())
	}
	for _, d := range env.emu.WebhookDeliveries() {
		if strings.Contains(d.Error, "SUPERSECRET") {
			t.Errorf("delivery error quotes the URL's query: %s", d.Error)
		}
	}
}

func TestRunStopsDuringInjectedDelay(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"-listen", "127.0.0.1:0", "-delay", "20s"}, nil, &out, nil) }()
	var addr string
	testutil.WaitFor(t, "listening", func() bool {
		s := out.String()
		if i := strings.Index(s, "listening on http://"); i >= 0 {
			addr = strings.Fields(s[i+len("listening on http://"):])[0]
			return true
		}
		return false
	})
	go http.Get("http://" + addr + DefaultBasePath + "/v1/health")
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v on a normal stop, want nil", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Run waits on the injected delay")
	}
}
