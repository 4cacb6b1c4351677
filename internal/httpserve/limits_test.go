package httpserve_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"khproxy/internal/httpserve"
)

// start serves s until the test ends and returns its address.
func start(t *testing.T, s httpserve.Server) string {
	t.Helper()
	ln := listen(t)
	s.Listener = ln
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		httpserve.Serve(ctx, httpserve.Options{Grace: time.Second}, s)
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMaxConnsRefusesOverTheLimit(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var refused atomic.Int32
	addr := start(t, httpserve.Server{Name: "limited", MaxConns: 1,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }),
		Refuse: func(w http.ResponseWriter, r *http.Request, status int) {
			if r != nil && status == http.StatusServiceUnavailable {
				refused.Add(1)
			}
			w.WriteHeader(status)
			io.WriteString(w, "busy")
		}})
	held := dial(t, addr)
	io.WriteString(held, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
	// The held connection was accepted first, so the next one is over.
	c := dial(t, addr)
	io.WriteString(c, "GET /over HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "busy" || !resp.Close || refused.Load() != 1 {
		t.Errorf("status %d %q close %v, Refuse called %d times; want Refuse's 503 once, closing", resp.StatusCode, body, resp.Close, refused.Load())
	}
}

func TestStalledHeadersAnsweredByRefuse(t *testing.T) {
	tests := []struct {
		name     string
		refuse   func(http.ResponseWriter, *http.Request, int)
		wantBody string
	}{
		{"default", nil, "Request Timeout"},
		{"given", func(w http.ResponseWriter, r *http.Request, status int) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(status)
			io.WriteString(w, `{"status":408}`)
		}, `{"status":408}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := start(t, httpserve.Server{Name: "s", ReadTimeout: 200 * time.Millisecond, Refuse: tt.refuse, Handler: http.NotFoundHandler()})
			c := dial(t, addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHo")
			all, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(all))), nil)
			if err != nil {
				t.Fatalf("%q: %v", all, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), tt.wantBody) || !resp.Close {
				t.Errorf("got %q; want one 408 with %q, closing", all, tt.wantBody)
			}
			if strings.Count(string(all), "HTTP/1.1 ") != 1 {
				t.Errorf("more than one answer: %q", all)
			}
		})
	}
}

func TestBeforeCloseOnlyWhenGraceRunsOut(t *testing.T) {
	for _, stuck := range []bool{false, true} {
		t.Run(map[bool]string{false: "clean", true: "grace runs out"}[stuck], func(t *testing.T) {
			block, started := make(chan struct{}), make(chan struct{})
			defer close(block)
			var calls, handlerDone atomic.Int32
			ln := listen(t)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				errc <- httpserve.Serve(ctx, httpserve.Options{Grace: 200 * time.Millisecond}, httpserve.Server{
					Name: "s", Listener: ln,
					Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						close(started)
						if stuck {
							<-block
						}
						handlerDone.Add(1)
					}),
					BeforeClose: func() {
						calls.Add(1)
						if handlerDone.Load() != 0 {
							t.Error("BeforeClose called after the request finished")
						}
					},
				})
			}()
			go http.Get("http://" + ln.Addr().String())
			<-started
			if !stuck {
				for handlerDone.Load() == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			cancel()
			<-errc
			if want := map[bool]int32{false: 0, true: 1}[stuck]; calls.Load() != want {
				t.Errorf("BeforeClose called %d times, want %d", calls.Load(), want)
			}
		})
	}
}

// TestIdleConnectionsGiveWay repeats the attack of issue 19, scaled down:
// at MaxConns, clients that made one request each and stay connected, idle,
// must not lock new clients out; the longest idle connections are closed
// to admit them, as nginx does.
func TestIdleConnectionsGiveWay(t *testing.T) {
	const maxConns = 8
	addr := start(t, httpserve.Server{Name: "limited", MaxConns: maxConns,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })})
	get := func(c net.Conn, br *bufio.Reader) (int, error) {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	type client struct {
		c  net.Conn
		br *bufio.Reader
	}
	var idle []client
	for i := range maxConns + maxConns/2 {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		if code, err := get(c, br); err != nil || code != http.StatusOK {
			t.Fatalf("client %d, with %d idle before it: %d, %v; want 200", i, len(idle), code, err)
		}
		idle = append(idle, client{c, br})
	}
	// Idle connections were closed to make room, as few as needed; the
	// latest client's stays usable.
	closed := 0
	for i, cl := range idle {
		if _, err := get(cl.c, cl.br); err != nil {
			closed++
			if i == len(idle)-1 {
				t.Errorf("the latest client's connection was closed: %v", err)
			}
		}
	}
	if closed != maxConns/2 {
		t.Errorf("%d idle connections closed, want %d: the ones over the limit", closed, maxConns/2)
	}
}

// TestBusyConnectionsDoNotGiveWay: a connection in the middle of a request,
// or whose next request has begun to arrive, is not idle, and is not
// closed to admit another.
func TestBusyConnectionsDoNotGiveWay(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr := start(t, httpserve.Server{Name: "limited", MaxConns: 2,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/held" {
				<-release
			}
			io.WriteString(w, "ok")
		})})
	busy := dial(t, addr)
	io.WriteString(busy, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
	next := dial(t, addr)
	br := bufio.NewReader(next)
	io.WriteString(next, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %v", err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	// Its next request begins to arrive, and the server reads it.
	io.WriteString(next, "GET /quick HTTP/1.1\r\n")
	time.Sleep(250 * time.Millisecond) // nothing to wait on: the bytes sit in the server's buffer
	c := dial(t, addr)
	io.WriteString(c, "GET /over HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503: no connection was idle", resp.StatusCode)
	}
	io.WriteString(next, "Host: x\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the connection whose request had begun: %v, want its request answered", err)
	}
}
