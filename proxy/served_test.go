package proxy_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/internal/httpserve"
	"khproxy/internal/testutil"
	"khproxy/proxy"
	"khproxy/signer"
)

// served is a proxy behind internal/httpserve, the way khproxy runs it, in
// front of a test upstream.
type served struct {
	p    *proxy.Proxy
	addr string
	logs *testutil.SyncBuffer
	up   *upstream
	// stop shuts the server down, as SIGTERM does, and returns what
	// httpserve.Serve returned; the test's end calls it too.
	stop func() error
}

// serve starts a proxy in front of a test upstream answering with handle,
// served with srv's limits (its Name, Listener and Handler are filled in).
func serve(t testing.TB, handle http.HandlerFunc, srv httpserve.Server, mutate ...func(*proxy.Options)) *served {
	t.Helper()
	up := newUpstream(t, handle)
	u, err := url.Parse(up.URL + basePath)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	opts := proxy.Options{
		Upstream:         u,
		Signer:           &signer.Signer{Key: testKey, Secret: signer.StaticSecret(testSecret)},
		MaxBodyBytes:     2 << 20,
		IdempotentRoutes: defaultRoutes(t),
		Logger:           slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mutate {
		m(&opts)
	}
	p, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Name, srv.Listener, srv.Handler = "proxy", ln, p
	if srv.Refuse == nil {
		srv.Refuse = p.Refuse
	}
	if srv.Stopping == nil {
		srv.Stopping = p.StopReceiving
	}
	if srv.Stopping == nil {
		srv.Stopping = p.StopReceiving
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- httpserve.Serve(ctx, httpserve.Options{Grace: 2 * time.Second, Logger: opts.Logger}, srv)
	}()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	return &served{p: p, addr: ln.Addr().String(), logs: logs, up: up, stop: stop}
}

// dial opens a raw connection to the proxy with a deadline for the whole
// test step.
func (s *served) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// readResponse reads one response from br, with its body.
func readResponse(t testing.TB, br *bufio.Reader, method string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	return resp, body
}

// wantClosed checks that the server closes c without sending anything more.
func wantClosed(t testing.TB, br *bufio.Reader) {
	t.Helper()
	if b, err := br.ReadByte(); err == nil {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("connection still open: read %q%s", b, rest)
	}
}

// get sends a plain GET through the proxy on a new connection.
func (s *served) get(t testing.TB, path string) (*http.Response, []byte) {
	t.Helper()
	c := s.dial(t)
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	return readResponse(t, bufio.NewReader(c), "GET")
}

// hasArrival reports whether a request whose target contains part reached
// the upstream.
func (u *upstream) hasArrival(part string) bool {
	for _, a := range u.all() {
		if strings.Contains(a.RequestURI, part) {
			return true
		}
	}
	return false
}
