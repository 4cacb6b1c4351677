package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

type testEnv struct {
	emu    *Emulator
	srv    *httptest.Server
	clock  *testutil.Clock
	key    string
	secret string
	client *http.Client
}

// newEnv starts an emulator (rate limits off unless mutate turns them on)
// behind a real socket, with one all-scopes key.
func newEnv(t testing.TB, mutate func(*Options)) *testEnv {
	t.Helper()
	id, secret, err := NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	clock := testutil.NewClock(time.Unix(1_750_000_000, 0))
	opts := Options{
		Keys:      []Key{{ID: id, Secret: secret, Scopes: AllScopes()}},
		Now:       clock.Now,
		RateLimit: RateLimit{Disabled: true},
	}
	if mutate != nil {
		mutate(&opts)
	}
	emu, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(func() {
		srv.Close()
		emu.Close()
	})
	// No keep-alive: the transport never silently re-sends a signed
	// request on a reused connection (it would be a replay).
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	return &testEnv{emu: emu, srv: srv, clock: clock, key: id, secret: secret, client: client}
}

// rq describes one test request. path is relative to the base path and
// may carry a raw query.
type rq struct {
	method, path, body, idem string
	unsigned                 bool
	key, secret              string // override the env's credentials
	ts                       int64  // 0: the client clock (no offset)
	nonce                    string // "": fresh
	signPath                 string // "": path
	mutate                   func(http.Header)
	client                   *http.Client
}

func newNonce(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// signHeaders returns the four auth headers for r.
func (env *testEnv) signHeaders(t testing.TB, r rq) http.Header {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	key, secret := env.key, env.secret
	if r.key != "" {
		key = r.key
	}
	if r.secret != "" {
		secret = r.secret
	}
	ts := r.ts
	if ts == 0 {
		ts = env.clock.Now().Unix()
	}
	nonce := r.nonce
	if nonce == "" {
		nonce = newNonce(t)
	}
	sp := r.path
	if r.signPath != "" {
		sp = r.signPath
	}
	tss := strconv.FormatInt(ts, 10)
	h := http.Header{}
	h.Set(HeaderKey, key)
	h.Set(HeaderTimestamp, tss)
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSignature, testutil.Signature(secret, r.method, sp, tss, nonce, []byte(r.body)))
	return h
}

func (env *testEnv) do(t testing.TB, r rq) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := env.try(t, r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	return resp, body
}

func (env *testEnv) try(t testing.TB, r rq) (*http.Response, []byte, error) {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	var rd io.Reader
	if r.body != "" {
		rd = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, env.srv.URL+DefaultBasePath+r.path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if !r.unsigned {
		for k, v := range env.signHeaders(t, r) {
			req.Header[k] = v
		}
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.idem != "" {
		req.Header.Set(HeaderIdempotencyKey, r.idem)
	}
	if r.mutate != nil {
		r.mutate(req.Header)
	}
	c := env.client
	if r.client != nil {
		c = r.client
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// background sends r from another goroutine, as the first of two
// requests, and returns a function that waits for its answer (nil when
// it failed, which fails the test).
func (env *testEnv) background(t testing.TB, r rq) (wait func() (*http.Response, []byte)) {
	var resp *http.Response
	var body []byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		if resp, body, err = env.try(t, r); err != nil {
			t.Errorf("first: %v", err)
		}
	}()
	return func() (*http.Response, []byte) {
		<-done
		return resp, body
	}
}

func (env *testEnv) order(t testing.TB, idem string) map[string]any {
	t.Helper()
	resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: idem})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("order: status %d, body %s", resp.StatusCode, body)
	}
	return decode(t, body)
}

func decode(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return m
}

// wantProblem checks a problem+json answer of the emulator.
func wantProblem(t testing.TB, resp *http.Response, body []byte, status int, code, reason string) map[string]any {
	t.Helper()
	p := testutil.Problem(t, resp, body, status)
	if got, want := p["type"], problemType(code); got != want {
		t.Errorf("type: got %v, want %v", got, want)
	}
	if got := p["reason"]; reason != "" && got != reason {
		t.Errorf("reason: got %v, want %v", got, reason)
	}
	// An invention of the emulator says so in the answer itself.
	gotReason, _ := p["reason"].(string)
	if note, want := p["emulator"], inventionNote(code, gotReason); (note != nil) != (want != "") {
		t.Errorf("emulator field: got %v, want %q", note, want)
	}
	if got, want := p["request_id"], resp.Header.Get("X-Request-Id"); got != want {
		t.Errorf("request_id: got %v, want header %v", got, want)
	}
	return p
}

func fieldOf(t testing.TB, p map[string]any) string {
	t.Helper()
	errs, _ := p["errors"].([]any)
	if len(errs) == 0 {
		t.Fatalf("no errors[] in %v", p)
	}
	return errs[0].(map[string]any)["field"].(string)
}
