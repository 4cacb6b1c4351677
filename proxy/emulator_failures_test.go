package proxy_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"khproxy/emulator"
	"khproxy/internal/testutil"
	"khproxy/proxy"
	"khproxy/signer"
)

// tap records the last answer the emulator itself gave, before khproxy.
type tap struct {
	next   http.Handler
	mu     sync.Mutex
	status int
	header http.Header
	body   []byte
}

func (tp *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	tp.next.ServeHTTP(rec, r)
	tp.mu.Lock()
	tp.status, tp.header, tp.body = rec.Code, rec.Header().Clone(), rec.Body.Bytes()
	tp.mu.Unlock()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

func (tp *tap) last() (int, http.Header, []byte) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.status, tp.header, tp.body
}

// failureHarness is khproxy in front of an emulator built from opts, whose
// own answers are tapped.
type failureHarness struct {
	emu   *emulator.Emulator
	key   string
	tap   *tap
	proxy *httptest.Server
}

func newFailureHarness(t *testing.T, opts emulator.Options) *failureHarness {
	t.Helper()
	key, secret, err := emulator.NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Keys) == 0 {
		opts.Keys = []emulator.Key{{Scopes: emulator.AllScopes()}}
	}
	opts.Keys[0].ID, opts.Keys[0].Secret = key, secret
	opts.RateLimit.Disabled = true
	emu, err := emulator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	tp := &tap{next: emu}
	up := httptest.NewServer(tp)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL + emulator.DefaultBasePath)
	srv, _ := startProxy(t, emuProxyOptions(t, u, key, secret), secret)
	return &failureHarness{emu: emu, key: key, tap: tp, proxy: srv}
}

// emuProxyOptions configures khproxy for an emulator at upstream, as
// production does: the default idempotent routes, three retries.
func emuProxyOptions(t testing.TB, upstream *url.URL, key, secret string) proxy.Options {
	t.Helper()
	return proxy.Options{
		Upstream:          upstream,
		Signer:            &signer.Signer{Key: key, Secret: signer.StaticSecret(secret)},
		IdempotentRoutes:  defaultRoutes(t),
		RetryMax:          3,
		RetryBudget:       10 * time.Second,
		IdempotencyWindow: time.Minute,
	}
}

// TestFailuresPassThroughUnchanged makes the emulator produce each failure
// an app must handle and checks that khproxy answers with the API's own
// answer, byte for byte, after exactly one attempt.
func TestFailuresPassThroughUnchanged(t *testing.T) {
	credit5 := emulator.Options{InitialBalance: 500} // 5.00, below product 42's 9.99
	withCard := func(c emulator.Card) emulator.Options { o := credit5; o.Card = c; return o }
	tests := []struct {
		name         string
		opts         emulator.Options
		setup        func(*failureHarness) error
		method, path string
		body         string
		status       int
		reason       string
	}{
		{"no card", credit5, nil, "POST", "/v1/orders", testutil.OrderBody, 402, "insufficient_credit_and_no_card"},
		{"card declined", withCard(emulator.CardDeclining), nil, "POST", "/v1/orders", testutil.OrderBody, 402, "card_declined"},
		{"card expired", withCard(emulator.CardExpired), nil, "POST", "/v1/orders", testutil.OrderBody, 402, "card_expired"},
		{"key locked at run time", emulator.Options{}, func(h *failureHarness) error { return h.emu.LockKey(h.key, true) },
			"GET", "/v1/me", "", 401, "unknown_or_locked_key"},
		{"secret rotated at run time", emulator.Options{}, func(h *failureHarness) error {
			_, err := h.emu.RotateSecret(h.key, "")
			return err
		}, "GET", "/v1/me", "", 401, "signature_mismatch"},
		{"IP not on the whitelist", emulator.Options{}, func(h *failureHarness) error {
			return h.emu.SetAllowIPs(h.key, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
		}, "GET", "/v1/me", "", 401, "ip_not_allowed"},
		{"default read-only key orders", emulator.Options{Keys: []emulator.Key{{}}}, nil,
			"POST", "/v1/orders", testutil.OrderBody, 403, "missing_scope"},
		{"default read-only key reads credentials", emulator.Options{Keys: []emulator.Key{{}}}, nil,
			"GET", "/v1/services/5001/credentials", "", 403, "missing_scope"},
		{"scopes restricted at run time", emulator.Options{}, func(h *failureHarness) error {
			return h.emu.SetScopes(h.key, []string{emulator.ScopeReadProducts})
		}, "GET", "/v1/billing/balance", "", 403, "missing_scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newFailureHarness(t, tc.opts)
			if tc.setup != nil {
				if err := tc.setup(h); err != nil {
					t.Fatal(err)
				}
			}
			code, hdr, body := sendThrough(t, h.proxy, tc.method, tc.path, tc.body)
			apiCode, apiHdr, apiBody := h.tap.last()
			if code != tc.status || apiCode != tc.status {
				t.Fatalf("status: proxy %d, API %d, want %d: %s", code, apiCode, tc.status, body)
			}
			if !bytes.Equal(body, apiBody) {
				t.Errorf("body changed:\nproxy %s\nAPI   %s", body, apiBody)
			}
			if !bytes.Contains(body, []byte(`"reason":"`+tc.reason+`"`)) {
				t.Errorf("reason %s not in %s", tc.reason, body)
			}
			for _, name := range []string{"Content-Type", "X-Request-Id", emulator.HeaderEmulator} {
				if got, want := hdr.Get(name), apiHdr.Get(name); got != want || want == "" {
					t.Errorf("%s: proxy %q, API %q", name, got, want)
				}
			}
			total := 0
			for _, n := range h.emu.Requests() {
				total += n
			}
			if total != 1 {
				t.Errorf("%d attempts reached the API, want 1: %v", total, h.emu.Requests())
			}
		})
	}
}

// TestPendingAnswersPassThrough: the lifecycle's in-between answers (201
// pending, 202 for a slow action) reach the app as the API sent them.
func TestPendingAnswersPassThrough(t *testing.T) {
	h := newFailureHarness(t, emulator.Options{Lifecycle: emulator.Lifecycle{Manual: true}})
	code, _, body := sendThrough(t, h.proxy, "POST", "/v1/orders", testutil.OrderBody)
	if _, _, api := h.tap.last(); code != http.StatusCreated || !bytes.Equal(body, api) || !bytes.Contains(body, []byte(`"status":"pending"`)) {
		t.Fatalf("order: %d %s", code, body)
	}
	h.emu.Advance()
	h.emu.Advance()
	code, _, body = sendThrough(t, h.proxy, "POST", "/v1/services/5001/actions", `{"action":"reboot"}`)
	if _, _, api := h.tap.last(); code != http.StatusAccepted || !bytes.Equal(body, api) || !bytes.Contains(body, []byte(`"status":"pending"`)) {
		t.Fatalf("action: %d %s", code, body)
	}
}

func sendThrough(t *testing.T, srv *httptest.Server, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	h := &emuHarness{proxy: srv}
	code, hdr, b, err := h.send(srv.Client(), method, path, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	return code, hdr, b
}
