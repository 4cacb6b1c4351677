package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/apiroute"
	"khproxy/config"
	"khproxy/internal/testutil"
	"khproxy/proxy"
	"khproxy/signer"
)

const (
	testKey    = "kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	testSecret = "test-secret-0123456789abcdefghij"
	basePath   = "/cp/kh_reseller_api"
)

// arrival is what the test upstream saw of one request.
type arrival struct {
	Method        string
	RequestURI    string
	Host          string
	Header        http.Header
	Body          []byte
	ContentLength int64
	Chunked       bool
	SigErr        error // nil when the signature verified
}

// upstream is an httptest server that checks each request's signature with
// its own code (not package signer) and records what arrived.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	arrivals []arrival
	handle   http.HandlerFunc // answers after recording; nil: 200 {"ok":true}
}

func newUpstream(t testing.TB, handle http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{handle: handle}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a := arrival{
		Method:        r.Method,
		RequestURI:    r.RequestURI,
		Host:          r.Host,
		Header:        r.Header.Clone(),
		Body:          body,
		ContentLength: r.ContentLength,
		Chunked:       len(r.TransferEncoding) > 0,
	}
	a.SigErr = verify(r.Method, r.RequestURI, r.Header, body)
	u.mu.Lock()
	u.arrivals = append(u.arrivals, a)
	u.mu.Unlock()
	if a.SigErr != nil {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"type":"auth_failed","detail":%q}`, a.SigErr.Error())
		return
	}
	if u.handle != nil {
		u.handle(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "01HX7Z3K8QTESTREQUESTID000")
	io.WriteString(w, `{"ok":true}`)
}

// verify checks the four KH-* headers the way the API documents them.
func verify(method, requestURI string, h http.Header, body []byte) error {
	path, ok := strings.CutPrefix(requestURI, basePath)
	if !ok {
		return fmt.Errorf("request-target %q lacks the base path", requestURI)
	}
	return testutil.VerifySignature(h, testKey, testSecret, method, path, body)
}

// defaultRoutes are the configuration's default idempotent routes.
func defaultRoutes(t testing.TB) []apiroute.Pattern {
	t.Helper()
	cfg, _, err := config.Load([]string{"KH_KEY=" + testKey, "KH_SECRET=x"})
	if err != nil {
		t.Fatal(err)
	}
	return cfg.IdempotentRoutes
}

func (u *upstream) all() []arrival {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]arrival(nil), u.arrivals...)
}

func (u *upstream) last(t testing.TB) arrival {
	t.Helper()
	all := u.all()
	if len(all) == 0 {
		t.Fatal("nothing arrived upstream")
	}
	return all[len(all)-1]
}

// harness is a proxy in front of a test upstream, both on real sockets.
type harness struct {
	up    *upstream
	proxy *httptest.Server
	logs  *testutil.SyncBuffer
}

func newHarness(t testing.TB, handle http.HandlerFunc, mutate ...func(*proxy.Options)) *harness {
	t.Helper()
	up := newUpstream(t, handle)
	return newHarnessFor(t, up, up.URL+basePath, mutate...)
}

func newHarnessFor(t testing.TB, up *upstream, upstreamURL string, mutate ...func(*proxy.Options)) *harness {
	t.Helper()
	u, err := url.Parse(upstreamURL)
	if err != nil {
		t.Fatal(err)
	}
	opts := proxy.Options{
		Upstream:         u,
		Signer:           &signer.Signer{Key: testKey, Secret: signer.StaticSecret(testSecret)},
		MaxBodyBytes:     2 << 20,
		IdempotentRoutes: defaultRoutes(t),
	}
	for _, m := range mutate {
		m(&opts)
	}
	srv, logs := startProxy(t, opts, testSecret)
	h := &harness{up: up, proxy: srv, logs: logs}
	return h
}

// startProxy serves a proxy built from opts (with a JSON logger added) and
// fails the test if the log ever holds secret.
func startProxy(t testing.TB, opts proxy.Options, secret string) (*httptest.Server, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
		if strings.Contains(logs.String(), secret) {
			t.Error("the log contains the secret")
		}
	})
	return srv, logs
}

// raw sends request text as-is over a new connection to the proxy and returns
// the parsed response with its body read.
func (h *harness) raw(t testing.TB, request string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.proxy.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(request, " ")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	for err == nil && resp.StatusCode == http.StatusContinue {
		resp, err = http.ReadResponse(br, &http.Request{Method: method})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// rawOK sends request text like raw, requires a 200 and a signature the
// upstream accepted, and returns what arrived upstream.
func (h *harness) rawOK(t testing.TB, request string) arrival {
	t.Helper()
	resp, body := h.raw(t, request)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200: %s", resp.StatusCode, body)
	}
	a := h.up.last(t)
	if a.SigErr != nil {
		t.Errorf("upstream rejected the signature: %v", a.SigErr)
	}
	return a
}

// do sends a request through the proxy with Go's client.
func (h *harness) do(t testing.TB, method, path string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.proxy.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return testutil.Do(t, h.proxy.Client(), req)
}
