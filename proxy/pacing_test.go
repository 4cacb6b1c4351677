package proxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/internal/testutil"
	"khproxy/proxy"
	"khproxy/ratelimit"
	"khproxy/ratelimit/ratelimittest"
	"khproxy/ratelimit/redisstore"
	"khproxy/ratelimit/redisstore/redistest"
	"khproxy/signer"
)

// limitedAPI is the emulator with its rate limit on, counting the statuses
// it answers; several proxies may stand in front of it.
type limitedAPI struct {
	emu         *emulator.Emulator
	url         *url.URL
	key, secret string

	mu       sync.Mutex
	statuses map[int]int
}

// fastLimit is the emulator's limit in these tests: 10 requests a second,
// burst 5, and the limiter that matches it.
var (
	fastLimit   = emulator.RateLimit{PerMinute: 600, Burst: 5}
	fastLimiter = ratelimit.Limit{Every: 100 * time.Millisecond, Burst: 5}
)

func newLimitedAPI(t testing.TB, rl emulator.RateLimit) *limitedAPI {
	t.Helper()
	emu, key, secret := emulatortest.New(t, func(o *emulator.Options) { o.RateLimit = rl })
	api := &limitedAPI{emu: emu, key: key, secret: secret, statuses: map[int]int{}}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w}
		emu.ServeHTTP(rec, r)
		api.mu.Lock()
		api.statuses[rec.status]++
		api.mu.Unlock()
	}))
	t.Cleanup(up.Close)
	api.url, _ = url.Parse(up.URL + emulator.DefaultBasePath)
	return api
}

// answered returns how many answers with status the API gave.
func (a *limitedAPI) answered(status int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.statuses[status]
}

// calls returns how many requests reached the API.
func (a *limitedAPI) calls() int {
	n := 0
	for _, c := range a.emu.Requests() {
		n += c
	}
	return n
}

// proxy starts a proxy in front of a, paced by limiter (nil: none).
func (a *limitedAPI) proxy(t testing.TB, limiter *ratelimit.Limiter, mutate ...func(*proxy.Options)) *emuHarness {
	t.Helper()
	opts := proxy.Options{
		Upstream:          a.url,
		Signer:            &signer.Signer{Key: a.key, Secret: signer.StaticSecret(a.secret)},
		IdempotentRoutes:  testutil.Patterns(t, "POST /v1/orders"),
		RetryMax:          3,
		RetryBudget:       10 * time.Second,
		IdempotencyWindow: time.Minute,
		Limiter:           limiter,
	}
	for _, m := range mutate {
		m(&opts)
	}
	srv, logs := startProxy(t, opts, a.secret)
	return &emuHarness{emu: a.emu, proxy: srv, logs: logs}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// parallelGets sends n GET /v1/me at once through each harness and returns
// the statuses.
func parallelGets(t testing.TB, n int, hs ...*emuHarness) map[int]int {
	t.Helper()
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for _, h := range hs {
		for range n {
			wg.Go(func() {
				code, _, _, err := h.send(h.proxy.Client(), "GET", "/v1/me", "", nil)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				got[code]++
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return got
}

func TestPacingKeepsParallelRequestsUnderTheLimit(t *testing.T) {
	t.Parallel()
	const n = 15 // three bursts' worth
	t.Run("paced", func(t *testing.T) {
		api := newLimitedAPI(t, fastLimit)
		l, reg := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: fastLimiter, MaxWait: 10 * time.Second})
		got := parallelGets(t, n, api.proxy(t, l))
		if got[http.StatusOK] != n {
			t.Errorf("statuses %v, want %d × 200", got, n)
		}
		// A 429 can still happen when a request overtakes the first one
		// on the wire; it pauses the bucket and the request waits again.
		if c := api.answered(http.StatusTooManyRequests); c > 1 {
			t.Errorf("the API answered %d × 429, want (almost) none", c)
		}
		if w := ratelimittest.Metric(t, reg, "khproxy_ratelimit_rejected_total"); w != 0 {
			t.Errorf("khproxy refused %v requests, want none within the wait bound", w)
		}
	})
	t.Run("unpaced, for comparison", func(t *testing.T) {
		api := newLimitedAPI(t, fastLimit)
		parallelGets(t, n, api.proxy(t, nil))
		if c := api.answered(http.StatusTooManyRequests); c == 0 {
			t.Error("the API answered no 429 without pacing: the paced case proves nothing")
		}
	})
}

func TestCallerWhoLeavesWhileWaitingFreesItsTurn(t *testing.T) {
	api := newLimitedAPI(t, fastLimit)
	bucket, err := ratelimit.NewMemory(ratelimit.Limit{Every: time.Minute, Burst: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, reg := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: ratelimit.Limit{Every: time.Minute, Burst: 1}, MaxWait: time.Hour, Shared: bucket})
	h := api.proxy(t, l)
	if code, _, body := h.must(t, "GET", "/v1/me", "", nil); code != http.StatusOK {
		t.Fatalf("first: %d %s", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", h.proxy.URL+"/v1/me", nil)
		resp, err := h.proxy.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	testutil.WaitFor(t, "the second caller in line", func() bool { return ratelimittest.Metric(t, reg, "khproxy_ratelimit_waiting") == 1 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	testutil.WaitFor(t, "the caller out of line", func() bool { return ratelimittest.Metric(t, reg, "khproxy_ratelimit_waiting") == 0 })
	if tok, _ := bucket.Tokens(context.Background()); tok < -0.01 {
		t.Errorf("tokens = %.2f after the caller left, want its token back (0)", tok)
	}
	if c := api.calls(); c != 1 {
		t.Errorf("%d requests reached the API, want 1", c)
	}
}

func TestWaitBoundAnswers429WithoutCallingTheAPI(t *testing.T) {
	api := newLimitedAPI(t, fastLimit)
	l, reg := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: ratelimit.Limit{Every: time.Minute, Burst: 1}, MaxWait: time.Second})
	h := api.proxy(t, l)
	if code, _, _ := h.must(t, "GET", "/v1/me", "", nil); code != http.StatusOK {
		t.Fatalf("first: %d", code)
	}
	resp, body := do(t, h, "GET", "/v1/me")
	p := testutil.Problem(t, resp, body, http.StatusTooManyRequests)
	if got, want := p["type"], proxy.TypePrefix+"rate_limited"; got != want {
		t.Errorf("type = %v, want %s", got, want)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 55 || s > 60 {
		t.Errorf("Retry-After = %q, want about 60 seconds", resp.Header.Get("Retry-After"))
	}
	if c := api.calls(); c != 1 {
		t.Errorf("%d requests reached the API, want 1: the refused one must not", c)
	}
	if got := ratelimittest.Metric(t, reg, "khproxy_ratelimit_rejected_total"); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}
}

func do(t testing.TB, h *emuHarness, method, path string) (*http.Response, []byte) {
	t.Helper()
	code, hdr, body := h.must(t, method, path, "", nil)
	return &http.Response{StatusCode: code, Header: hdr}, body
}

func TestAPI429PausesTheBucket(t *testing.T) {
	t.Run("longer than the retry budget", func(t *testing.T) {
		api := newLimitedAPI(t, emulator.RateLimit{Disabled: true})
		l, reg := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: fastLimiter, MaxWait: 10 * time.Second})
		h := api.proxy(t, l)
		api.emu.SetFaults(emulator.Faults{FailCount: 1, FailStatus: 429, RetryAfter: time.Hour})
		if code, _, _ := h.must(t, "GET", "/v1/me", "", nil); code != http.StatusTooManyRequests {
			t.Fatalf("status = %d, want the API's 429 passed through", code)
		}
		// The bucket is paused for the hour: the next request is refused
		// by khproxy, and the API does not see it.
		resp, body := do(t, h, "GET", "/v1/products")
		testutil.Problem(t, resp, body, http.StatusTooManyRequests)
		if s, _ := strconv.Atoi(resp.Header.Get("Retry-After")); s < 3500 {
			t.Errorf("Retry-After = %q, want about an hour", resp.Header.Get("Retry-After"))
		}
		if c := api.calls(); c != 1 {
			t.Errorf("%d requests reached the API, want 1", c)
		}
		if got := ratelimittest.Metric(t, reg, "khproxy_ratelimit_upstream_429_total"); got != 1 {
			t.Errorf("API 429s = %v, want 1", got)
		}
	})
	t.Run("within the retry budget", func(t *testing.T) {
		api := newLimitedAPI(t, emulator.RateLimit{Disabled: true})
		l, _ := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: fastLimiter, MaxWait: 10 * time.Second})
		h := api.proxy(t, l)
		api.emu.SetFaults(emulator.Faults{FailCount: 1, FailStatus: 429, RetryAfter: time.Second})
		if code, _, body := h.must(t, "GET", "/v1/me", "", nil); code != http.StatusOK {
			t.Fatalf("status = %d, want 200 after waiting out the pause: %s", code, body)
		}
		// The retry waited in the limiter's line for the pause, not in a
		// blind sleep. The access-log line follows the answer: wait for it.
		testutil.WaitFor(t, "the access-log line", func() bool { return strings.Contains(h.logs.String(), `"msg":"request"`) })
		if !strings.Contains(h.logs.String(), `"rate_wait"`) || !strings.Contains(h.logs.String(), `"attempts":2`) {
			t.Errorf("access log does not show a second attempt after a wait in line:\n%s", h.logs)
		}
	})
}

func TestHealthSpendsNoBudget(t *testing.T) {
	api := newLimitedAPI(t, fastLimit)
	l, _ := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: ratelimit.Limit{Every: time.Minute, Burst: 1}})
	h := api.proxy(t, l)
	for i := range 3 {
		if code, _, _ := h.must(t, "GET", "/v1/health", "", nil); code != http.StatusOK {
			t.Fatalf("health %d: %d", i, code)
		}
	}
	if code, _, _ := h.must(t, "GET", "/v1/me", "", nil); code != http.StatusOK {
		t.Errorf("the key's one token was spent by health checks: %d", code)
	}
	if code, _, _ := h.must(t, "GET", "/v1/me", "", nil); code != http.StatusTooManyRequests {
		t.Errorf("second /v1/me: %d, want khproxy's 429 (burst 1)", code)
	}
}

// sharedLimiter builds what one replica builds from KH_REDIS_URL.
func sharedLimiter(t testing.TB, srv *redistest.Server, apiKey string, limit ratelimit.Limit) (*ratelimit.Limiter, *ratelimit.RetryMemory, *ratelimit.Outage) {
	t.Helper()
	client, err := redisstore.NewClient(srv.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	store, err := redisstore.New(client, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := store.Bucket(limit)
	if err != nil {
		t.Fatal(err)
	}
	outage, err := ratelimit.NewOutage(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ratelimit.New(ratelimit.Options{Limit: limit, MaxWait: 10 * time.Second, Shared: bucket, Outage: outage})
	if err != nil {
		t.Fatal(err)
	}
	return l, ratelimit.NewRetryMemory(time.Minute, store, outage), outage
}

func TestTwoProxiesShareOneRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	t.Run("they stay under the limit together", func(t *testing.T) {
		api := newLimitedAPI(t, fastLimit)
		la, _, _ := sharedLimiter(t, srv, api.key, fastLimiter)
		lb, _, _ := sharedLimiter(t, srv, api.key, fastLimiter)
		const n = 8
		got := parallelGets(t, n, api.proxy(t, la), api.proxy(t, lb))
		if got[http.StatusOK] != 2*n {
			t.Errorf("statuses %v, want %d × 200", got, 2*n)
		}
		if c := api.answered(http.StatusTooManyRequests); c > 1 {
			t.Errorf("the API answered %d × 429, want (almost) none", c)
		}
	})
	t.Run("a retry through the second reuses the first's key", func(t *testing.T) {
		api := newLimitedAPI(t, emulator.RateLimit{Disabled: true})
		la, ma, _ := sharedLimiter(t, srv, api.key, fastLimiter)
		lb, mb, _ := sharedLimiter(t, srv, api.key, fastLimiter)
		a := api.proxy(t, la, func(o *proxy.Options) { o.RetryMemory = ma })
		b := api.proxy(t, lb, func(o *proxy.Options) { o.RetryMemory = mb })
		abandonThenRetry(t, api.emu, a, b)
	})
	t.Run("Redis stopped mid-run", func(t *testing.T) {
		api := newLimitedAPI(t, fastLimit)
		la, ma, outage := sharedLimiter(t, srv, api.key, fastLimiter)
		a := api.proxy(t, la, func(o *proxy.Options) { o.RetryMemory = ma })
		if got := parallelGets(t, 3, a); got[http.StatusOK] != 3 {
			t.Fatalf("with Redis: %v", got)
		}
		srv.Stop()
		if got := parallelGets(t, 3, a); got[http.StatusOK] != 3 {
			t.Errorf("with Redis stopped: %v, want 3 × 200", got)
		}
		if code, _, body := a.must(t, "POST", "/v1/orders", testutil.OrderBody, nil); code != http.StatusCreated {
			t.Errorf("order with Redis stopped: %d %s", code, body)
		}
		if !outage.Down() {
			t.Error("no outage recorded")
		}
		srv.Restart()
		testutil.WaitFor(t, "Redis back", func() bool {
			parallelGets(t, 1, a)
			return !outage.Down()
		})
	})
}

// TestShutdownTakesRequestsOutOfLine: a request still waiting for its first
// token when khproxy starts shutting down gets 503 shutting_down at once,
// not a cut connection at the end of the grace period; it was never sent.
func TestShutdownTakesRequestsOutOfLine(t *testing.T) {
	api := newLimitedAPI(t, fastLimit)
	l, reg := ratelimittest.NewLimiter(t, ratelimit.Options{Limit: ratelimit.Limit{Every: time.Minute, Burst: 1}, MaxWait: time.Hour})
	h := api.proxy(t, l)
	if code, _, body := h.must(t, "GET", "/v1/me", "", nil); code != http.StatusOK {
		t.Fatalf("first: %d %s", code, body)
	}
	type answer struct {
		resp *http.Response
		body []byte
	}
	got := make(chan answer, 1)
	go func() {
		resp, body := do(t, h, "GET", "/v1/me")
		got <- answer{resp, body}
	}()
	testutil.WaitFor(t, "the second caller in line", func() bool { return ratelimittest.Metric(t, reg, "khproxy_ratelimit_waiting") == 1 })
	h.proxy.Config.Handler.(*proxy.Proxy).StopReceiving()
	var a answer
	select {
	case a = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the request in line got no answer when the shutdown began")
	}
	p := testutil.Problem(t, a.resp, a.body, http.StatusServiceUnavailable)
	if got, want := p["type"], proxy.TypePrefix+"shutting_down"; got != want {
		t.Errorf("type = %v, want %s", got, want)
	}
	if c := api.calls(); c != 1 {
		t.Errorf("%d requests reached the API, want 1", c)
	}
}
