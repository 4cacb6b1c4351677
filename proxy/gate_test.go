package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/proxy"
)

// fakeGate refuses what refuse says and records what it was told.
type fakeGate struct {
	refuse func(c *proxy.Call) error
	// hold, when not nil, is received from in Record: the test decides
	// when Record returns.
	hold chan struct{}

	mu       sync.Mutex
	admitted []string
	recorded []recorded
}

type recorded struct {
	call    proxy.Call
	body    string
	outcome proxy.Outcome
}

func (g *fakeGate) Admit(_ context.Context, c *proxy.Call) error {
	c.Body() // read now: Record sees what Admit read
	g.mu.Lock()
	g.admitted = append(g.admitted, c.Method+" "+c.Route)
	g.mu.Unlock()
	if g.refuse != nil {
		return g.refuse(c)
	}
	return nil
}

func (g *fakeGate) Record(c *proxy.Call, o *proxy.Outcome) {
	if g.hold != nil {
		<-g.hold
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.recorded = append(g.recorded, recorded{call: *c, body: string(c.Body()), outcome: *o})
}

func (g *fakeGate) records() []recorded {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]recorded(nil), g.recorded...)
}

func TestGateAdmitsAndHearsEveryRequest(t *testing.T) {
	g := &fakeGate{refuse: func(c *proxy.Call) error {
		if c.Route == "/v1/me" {
			return &proxy.Error{Kind: proxy.KindNotAllowed, Detail: "not on the list"}
		}
		if c.Route == "/v1/webhooks" {
			return &proxy.Error{Kind: proxy.KindOrderLimit, Detail: "enough", RetryAfter: 90 * time.Second}
		}
		return nil
	}}
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "req-1")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"id":1001,"amount":"9.99","currency":"EUR"}`))
	}, func(o *proxy.Options) { o.Gates = []proxy.Gate{g} })

	resp, body := h.do(t, "POST", "/v1/orders", strings.NewReader(testutil.OrderBody), nil)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Khproxy-Request-Id") == "" {
		t.Fatalf("order: %d %s, Khproxy-Request-Id %q", resp.StatusCode, body, resp.Header.Get("Khproxy-Request-Id"))
	}
	resp, body = h.do(t, "GET", "/v1/me", nil, nil)
	p := testutil.Problem(t, resp, body, http.StatusForbidden)
	if p["type"] != proxy.TypePrefix+"not_allowed" {
		t.Errorf("refusal type = %v", p["type"])
	}
	resp, body = h.do(t, "PUT", "/v1/webhooks", strings.NewReader(`{"url":null}`), nil)
	testutil.Problem(t, resp, body, http.StatusTooManyRequests)
	if got := resp.Header.Get("Retry-After"); got != "90" {
		t.Errorf("Retry-After = %q, want 90", got)
	}
	resp, body = h.do(t, "POST", "/v1/orders", strings.NewReader(testutil.OrderBody), http.Header{"Idempotency-Key": {"not a key"}})
	testutil.Problem(t, resp, body, http.StatusBadRequest)

	if n := len(h.up.all()); n != 1 {
		t.Errorf("%d requests reached the API, want 1: refused ones are not sent", n)
	}
	recs := g.records()
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4 (one per request, refused ones included): %+v", len(recs), recs)
	}
	order := recs[0]
	if order.call.Route != "/v1/orders" || order.call.KeySource != proxy.KeyAuto || order.call.IdempotencyKey == "" || order.body != testutil.OrderBody {
		t.Errorf("order call = %+v body %q", order.call, order.body)
	}
	o := order.outcome
	if o.Status != 201 || !o.Sent || o.UpstreamStatus != 201 || o.UpstreamRequestID != "req-1" || o.Kind != "" ||
		string(o.Answer) != `{"id":1001,"amount":"9.99","currency":"EUR"}` || !o.Complete {
		t.Errorf("order outcome = %+v (answer %q)", o, o.Answer)
	}
	if o := recs[1].outcome; o.Status != 403 || o.Sent || o.Kind != proxy.KindNotAllowed || o.UpstreamStatus != 0 || o.Answer != nil {
		t.Errorf("refused GET outcome = %+v", o)
	}
	if o := recs[2].outcome; o.Status != 429 || o.Sent || o.Kind != proxy.KindOrderLimit {
		t.Errorf("refused PUT outcome = %+v", o)
	}
	if o := recs[3].outcome; o.Status != 400 || o.Kind != proxy.KindBadRequest || o.Sent {
		t.Errorf("bad key outcome = %+v", o)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if want := []string{"POST /v1/orders", "GET /v1/me", "PUT /v1/webhooks"}; strings.Join(g.admitted, ",") != strings.Join(want, ",") {
		t.Errorf("admitted %v, want %v (a bad key is refused before the gates)", g.admitted, want)
	}
}

// TestGateRecordsBeforeTheCallerHearsTheAnswer holds Record and checks that
// the caller has no answer meanwhile.
func TestGateRecordsBeforeTheCallerHearsTheAnswer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, method, path, body string }{
		{"answer from the API", "POST", "/v1/orders", testutil.OrderBody},
		{"khproxy's own refusal", "POST", "/v1/orders", strings.Repeat("x", 3<<20)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := &fakeGate{hold: make(chan struct{})}
			h := newHarness(t, nil, func(o *proxy.Options) { o.Gates = []proxy.Gate{g} })
			release := sync.OnceFunc(func() { close(g.hold) })
			t.Cleanup(release) // before the servers close, should the test fail
			got := make(chan int, 1)
			go func() {
				req, _ := http.NewRequest(tt.method, h.proxy.URL+tt.path, strings.NewReader(tt.body))
				resp, err := h.proxy.Client().Do(req)
				if err != nil {
					got <- 0
					return
				}
				resp.Body.Close()
				got <- resp.StatusCode
			}()
			select {
			case code := <-got:
				t.Fatalf("the caller got %d while Record had not returned", code)
			case <-time.After(300 * time.Millisecond):
			}
			release()
			if code := <-got; code == 0 {
				t.Fatal("no answer after Record returned")
			}
			if n := len(g.records()); n != 1 {
				t.Errorf("%d records, want 1", n)
			}
		})
	}
}
