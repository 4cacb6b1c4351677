package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/internal/testutil"
	"khproxy/ratelimit/redisstore/redistest"
)

// guardAPI is the emulator, whose product lookups can be made to fail.
type guardAPI struct {
	emu          *emulator.Emulator
	srv          *httptest.Server
	key, secret  string
	failProducts atomic.Bool
}

func startGuardAPI(t *testing.T, mutate ...func(*emulator.Options)) *guardAPI {
	t.Helper()
	a := &guardAPI{}
	a.emu, a.key, a.secret = emulatortest.New(t, mutate...)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.failProducts.Load() && strings.Contains(r.URL.Path, "/v1/products/") {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		a.emu.ServeHTTP(w, r)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// env is khproxy's environment in front of a, plus extra.
func (a *guardAPI) env(extra ...string) []string {
	return append([]string{"KH_KEY=" + a.key, "KH_SECRET=" + a.secret, "KH_UPSTREAM=" + a.srv.URL + emulator.DefaultBasePath,
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_RATE_LIMIT=off", "KH_SHUTDOWN_DELAY=0s"}, extra...)
}

// orders is how many POST /v1/orders reached the emulator.
func (a *guardAPI) orders() int { return a.emu.Requests()["POST /v1/orders"] }

// answer is one answer through khproxy.
type answer struct {
	status int
	header http.Header
	body   map[string]any
}

// problemType returns the last segment of a problem answer's type.
func (a answer) problemType() string {
	s, _ := a.body["type"].(string)
	return s[strings.LastIndexAny(s, ":/")+1:]
}

func call(t *testing.T, addr, method, path, body, key string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(b, &a.body)
	return a
}

func order(t *testing.T, addr string, product int, cycle, key string) answer {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"product_id": product, "billing_cycle": cycle})
	return call(t, addr, "POST", "/v1/orders", string(b), key)
}

func TestGuardAllowList(t *testing.T) {
	api := startGuardAPI(t)
	r := startRun(t, api.env("KH_ALLOW=GET /v1/products/{id},POST /v1/orders")...)
	for _, tt := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/v1/products/42", "", 200},
		{"POST", "/v1/orders", testutil.OrderBody, 201},
		{"GET", "/v1/products", "", 403},
		{"GET", "/v1/me", "", 403},
		{"GET", "/v1/services/5001/credentials", "", 403},
		{"PUT", "/v1/webhooks", `{"url":null}`, 403},
		{"POST", "/v1/products/42", "{}", 403},
		{"GET", "/v1/nothing", "", 403},
		{"GET", "/v1/health", "", 403},
	} {
		a := call(t, r.proxy, tt.method, tt.path, tt.body, "")
		if a.status != tt.want || (tt.want == 403 && a.problemType() != "not_allowed") {
			t.Errorf("%s %s: %d %v, want %d", tt.method, tt.path, a.status, a.body, tt.want)
		}
	}
	got := api.emu.Requests()
	delete(got, "GET /v1/health") // the admin listener's readiness poll, not the app's
	for route, n := range got {
		if route != "GET /v1/products/{id}" && route != "POST /v1/orders" {
			t.Errorf("%d requests to %s reached the API", n, route)
		}
	}
	if m := testutil.Scrape(t, r.admin+"/metrics"); m[`khproxy_guard_refusals_total{rule="not_allowed"}`] != 7 {
		t.Errorf("not_allowed refusals metric = %v, want 7", m[`khproxy_guard_refusals_total{rule="not_allowed"}`])
	}
}

func TestGuardAllowListUnknownRoute(t *testing.T) {
	api := startGuardAPI(t)
	err := run(t.Context(), nil, api.env("KH_ALLOW=GET /v1/product/{id}"), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "KH_ALLOW") || !strings.Contains(err.Error(), "/v1/product/{id}") {
		t.Errorf("run = %v, want a KH_ALLOW error naming the route", err)
	}
}

func TestAuditLogUnusable(t *testing.T) {
	api := startGuardAPI(t)
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "missing", "audit.jsonl"), dir} {
		err := run(t.Context(), nil, api.env("KH_AUDIT_LOG="+path), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "KH_AUDIT_LOG") {
			t.Errorf("KH_AUDIT_LOG=%s: run = %v, want an error naming KH_AUDIT_LOG", path, err)
		}
	}
}

func TestGuardOrderLimit(t *testing.T) {
	api := startGuardAPI(t)
	r := startRun(t, api.env("KH_ORDER_LIMIT=2/1h")...)
	a := order(t, r.proxy, 42, "monthly", "client-key-A")
	b := order(t, r.proxy, 7, "monthly", "") // automatic key
	if a.status != 201 || b.status != 201 {
		t.Fatalf("first two orders: %d, %d", a.status, b.status)
	}
	c := order(t, r.proxy, 301, "monthly", "")
	if c.status != 429 || c.problemType() != "order_limit" || c.header.Get("Retry-After") == "" {
		t.Fatalf("third order: %d %v Retry-After %q, want 429 order_limit with Retry-After", c.status, c.body, c.header.Get("Retry-After"))
	}
	if n := api.orders(); n != 2 {
		t.Fatalf("%d orders reached the API, want 2: the refused one must not", n)
	}
	// Retries of answered orders with their keys are the same orders.
	ra := order(t, r.proxy, 42, "monthly", "client-key-A")
	rb := order(t, r.proxy, 7, "monthly", b.header.Get("Idempotency-Key"))
	if ra.status != 201 || rb.status != 201 || ra.body["id"] != a.body["id"] || rb.body["id"] != b.body["id"] {
		t.Fatalf("retries: %d %v, %d %v; want the same orders again", ra.status, ra.body, rb.status, rb.body)
	}
	if n := api.emu.OrderCount(); n != 2 {
		t.Errorf("the emulator holds %d orders, want 2", n)
	}
	if d := order(t, r.proxy, 42, "monthly", "client-key-D"); d.status != 429 {
		t.Errorf("a new client key at the limit: %d, want 429", d.status)
	}
	if g := call(t, r.proxy, "GET", "/v1/me", "", ""); g.status != 200 {
		t.Errorf("GET /v1/me at the order limit: %d, want 200: only orders are limited", g.status)
	}
	m := testutil.Scrape(t, r.admin+"/metrics")
	if m[`khproxy_guard_refusals_total{rule="order_limit"}`] != 2 || m["khproxy_guard_period_orders"] != 2 {
		t.Errorf("metrics: refusals %v, period orders %v; want 2, 2", m[`khproxy_guard_refusals_total{rule="order_limit"}`], m["khproxy_guard_period_orders"])
	}
}

func TestGuardSpendLimit(t *testing.T) {
	api := startGuardAPI(t)
	r := startRun(t, api.env("KH_SPEND_LIMIT=25EUR/24h")...)
	// Product 42 is 9.99 a month, 7 is 2.49, 301 is 3.49 (the emulator's catalog).
	steps := []struct {
		product int
		cycle   string
		want    int
		kind    string
	}{
		{42, "monthly", 201, ""},             // 9.99
		{42, "monthly", 201, ""},             // 19.98
		{42, "monthly", 403, "spend_limit"},  // would be 29.97
		{7, "monthly", 201, ""},              // 22.47
		{301, "monthly", 403, "spend_limit"}, // would be 25.96
		{999, "monthly", 403, "spend_limit"}, // no such product
		{42, "weekly", 403, "spend_limit"},   // no such price
	}
	var first answer
	for i, s := range steps {
		a := order(t, r.proxy, s.product, s.cycle, "")
		if a.status != s.want || (s.kind != "" && a.problemType() != s.kind) {
			t.Fatalf("step %d (product %d %s): %d %v, want %d %s", i, s.product, s.cycle, a.status, a.body, s.want, s.kind)
		}
		if i == 0 {
			first = a
		}
	}
	if bad := call(t, r.proxy, "POST", "/v1/orders", `{"product":42}`, ""); bad.status != 403 || bad.problemType() != "spend_limit" {
		t.Errorf("an order khproxy cannot read: %d %v, want 403 spend_limit", bad.status, bad.body)
	}
	if n := api.orders(); n != 3 {
		t.Fatalf("%d orders reached the API, want 3", n)
	}
	if again := order(t, r.proxy, 42, "monthly", first.header.Get("Idempotency-Key")); again.status != 201 || again.body["id"] != first.body["id"] {
		t.Errorf("retry of the first order at the limit: %d %v, want its 201 again", again.status, again.body)
	}
	if n := api.emu.Requests()["GET /v1/products/{id}"]; n != 4 {
		t.Errorf("%d price lookups reached the API, want 4 (42, 7, 301, 999: each product once, then cached)", n)
	}
	api.failProducts.Store(true)
	if a := order(t, r.proxy, 230, "monthly", ""); a.status != 503 || a.problemType() != "guard_unavailable" {
		t.Errorf("price lookup failing: %d %v, want 503 guard_unavailable", a.status, a.body)
	}
	if n := api.orders(); n != 4 {
		t.Errorf("%d orders reached the API, want 4 (3 and the retry)", n)
	}
	m := testutil.Scrape(t, r.admin+"/metrics")
	if got := m[`khproxy_guard_period_spend{currency="EUR"}`]; got != 22.47 {
		t.Errorf("period spend metric = %v, want 22.47", got)
	}
}

func TestGuardSpendLimitOtherCurrency(t *testing.T) {
	api := startGuardAPI(t, func(o *emulator.Options) { o.Currency = "USD" })
	r := startRun(t, api.env("KH_SPEND_LIMIT=100EUR/24h")...)
	if a := order(t, r.proxy, 42, "monthly", ""); a.status != 403 || a.problemType() != "spend_limit" || !strings.Contains(a.body["detail"].(string), "USD") {
		t.Errorf("a product priced in USD: %d %v, want 403 spend_limit naming USD", a.status, a.body)
	}
	if n := api.orders(); n != 0 {
		t.Errorf("%d orders reached the API", n)
	}
}

// TestGuardSharedThroughRedis runs two replicas on one redis-server: they
// share one order limit, and refuse orders when Redis is down.
func TestGuardSharedThroughRedis(t *testing.T) {
	t.Parallel()
	redis := redistest.Start(t)
	api := startGuardAPI(t)
	env := api.env("KH_ORDER_LIMIT=3/1h", "KH_SPEND_LIMIT=100EUR/24h", "KH_REDIS_URL="+redis.URL())
	r1, r2 := startRun(t, env...), startRun(t, env...)
	var statuses []int
	for i := range 6 {
		addr := []string{r1.proxy, r2.proxy}[i%2]
		statuses = append(statuses, order(t, addr, 7, "monthly", "").status)
	}
	if want := "[201,201,201,429,429,429]"; fmtInts(statuses) != want {
		t.Fatalf("orders alternating between replicas: %v, want %s", statuses, want)
	}
	if n := api.orders(); n != 3 {
		t.Fatalf("%d orders reached the API, want 3", n)
	}
	redis.Stop()
	for _, rr := range []*running{r1, r2} {
		a := order(t, rr.proxy, 7, "monthly", "")
		if a.status != 503 || a.problemType() != "guard_unavailable" || !strings.Contains(a.body["detail"].(string), "Redis") {
			t.Errorf("Redis down: %d %v, want 503 guard_unavailable naming Redis", a.status, a.body)
		}
		if g := call(t, rr.proxy, "GET", "/v1/me", "", ""); g.status != 200 {
			t.Errorf("GET with Redis down: %d, want 200", g.status)
		}
		if !strings.Contains(rr.logs.String(), "orders are refused") {
			t.Errorf("the log does not say orders are refused:\n%s", rr.logs)
		}
	}
	if n := api.orders(); n != 3 {
		t.Errorf("%d orders reached the API with Redis down, want still 3", n)
	}
}

func fmtInts(v []int) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAuditLogOfARun writes calls through khproxy with KH_AUDIT_LOG, runs
// it again on the same file, and verifies the whole with khproxy audit
// verify.
func TestAuditLogOfARun(t *testing.T) {
	t.Parallel()
	api := startGuardAPI(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	env := api.env("KH_AUDIT_LOG="+path, "KH_ORDER_LIMIT=1/1h")
	r := startRun(t, env...)
	// Each line is on disk by the time its caller has the answer.
	onDisk := func() int {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), "\n")
	}
	first := order(t, r.proxy, 42, "monthly", "")
	if n := onDisk(); n != 1 {
		t.Errorf("%d lines once the first order was answered, want 1", n)
	}
	refused := order(t, r.proxy, 7, "monthly", "")
	call(t, r.proxy, "GET", "/v1/me", "", "")
	call(t, r.proxy, "PUT", "/v1/webhooks", `{"url":null}`, "")
	if n := onDisk(); n != 3 {
		t.Errorf("%d lines after three writes and a read, want 3", n)
	}
	if first.status != 201 || refused.status != 429 {
		t.Fatalf("orders: %d, %d", first.status, refused.status)
	}
	r.cancel()
	<-r.errc
	r2 := startRun(t, env...)
	again := order(t, r2.proxy, 42, "monthly", first.header.Get("Idempotency-Key"))
	if again.status != 201 {
		t.Fatalf("retry after restart: %d", again.status)
	}
	r2.cancel()
	<-r2.errc

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4 (3 writes, then 1 after the restart; no GET):\n%s", len(lines), b)
	}
	var rec map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &rec)
	for k, want := range map[string]any{"method": "POST", "path": "/v1/orders", "route": "/v1/orders", "status": 201.0, "upstream_status": 201.0,
		"amount": "9.99", "currency": "EUR", "idempotency_key_source": "auto", "sent": true, "order_id": jsonString(first.body["id"])} {
		if rec[k] != want {
			t.Errorf("first line %s = %v, want %v", k, rec[k], want)
		}
	}
	for _, k := range []string{"time", "request_id", "client", "api_request_id", "idempotency_key", "prev", "hash"} {
		if s, _ := rec[k].(string); s == "" {
			t.Errorf("first line has no %s: %s", k, lines[0])
		}
	}
	if rec["request_id"] != first.header.Get("Khproxy-Request-Id") {
		t.Errorf("request_id %v, caller saw %q", rec["request_id"], first.header.Get("Khproxy-Request-Id"))
	}
	_ = json.Unmarshal([]byte(lines[1]), &rec)
	if rec["rule"] != "order_limit" || rec["status"] != 429.0 || rec["sent"] != false || !strings.Contains(rec["detail"].(string), "order limit") {
		t.Errorf("refused order's line: %s", lines[1])
	}
	var out strings.Builder
	if err := run(t.Context(), []string{"audit", "verify", path}, nil, &out, io.Discard); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out.String())
	}
	if s := out.String(); !strings.Contains(s, "1 orders") || !strings.Contains(s, "spend: 9.99 EUR") || !strings.Contains(s, "refused by order_limit: 1") {
		t.Errorf("audit verify printed:\n%s", s)
	}
	// One byte changed in the second line.
	changed := strings.Replace(string(b), `"status":429`, `"status":428`, 1)
	bad := filepath.Join(t.TempDir(), "changed.jsonl")
	_ = os.WriteFile(bad, []byte(changed), 0o600)
	err = run(t.Context(), []string{"audit", "verify", path, bad}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), bad+":2:") || exitCode(err) == 0 {
		t.Errorf("audit verify of a changed log: %v, want a failure naming %s:2", err, bad)
	}
}

// jsonString writes a decoded JSON number or string as text.
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}
