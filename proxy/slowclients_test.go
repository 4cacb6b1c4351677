package proxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"khproxy/internal/httpserve"
	"khproxy/internal/testutil"
	"khproxy/proxy"
)

// TestStalledUploadCutByReadTimeout: a client that stops sending its body
// gets 408 at the read timeout and its connection is closed; nothing is sent
// and its room in the budget goes back.
func TestStalledUploadCutByReadTimeout(t *testing.T) {
	s := serve(t, nil, httpserve.Server{ReadTimeout: 300 * time.Millisecond})
	c := s.dial(t)
	io.WriteString(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"product_id\":")
	want408Closed(t, c)
	if n := len(s.up.all()); n != 0 {
		t.Errorf("%d requests reached the upstream", n)
	}
	testutil.WaitFor(t, "the body's room given back", func() bool { return s.p.BodyBudget().Reserved == 0 })
}

// TestStalledHeadersGet408: a client that stops within its request's headers
// gets 408 too (Go's server alone would close without a word); one that
// sends nothing at all is simply closed.
func TestStalledHeadersGet408(t *testing.T) {
	s := serve(t, nil, httpserve.Server{ReadTimeout: 300 * time.Millisecond})
	c := s.dial(t)
	io.WriteString(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Le")
	want408Closed(t, c)

	idle := s.dial(t)
	if b, err := io.ReadAll(idle); len(b) != 0 || err != nil {
		t.Errorf("a connection that sent nothing got %q, %v; want a plain close", b, err)
	}
}

// want408Closed checks that c is answered 408 request_timeout and closed.
func want408Closed(t *testing.T, c net.Conn) {
	t.Helper()
	br := bufio.NewReader(c)
	resp, body := readResponse(t, br, "POST")
	assertProblem(t, resp, body, http.StatusRequestTimeout, "request_timeout")
	if !resp.Close {
		t.Error("408 without Connection: close")
	}
	wantClosed(t, br)
}

// holdConn opens a connection that sends part of an upload and stalls,
// holding one of the server's connections until its read timeout.
func holdConn(t *testing.T, s *served) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := s.dial(t)
	io.WriteString(c, "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
	return c, bufio.NewReader(c)
}

// TestConnectionLimit: while slow clients hold connections, good requests
// are served up to KH_MAX_CONNS; over it they get a prompt 503 saying it is
// khproxy's overload, and beyond a few of those, connections are closed at
// once. Once the read timeout cuts the slow clients, good requests are
// served again.
func TestConnectionLimit(t *testing.T) {
	t.Run("served while a slow client holds a connection", func(t *testing.T) {
		s := serve(t, nil, httpserve.Server{ReadTimeout: 10 * time.Second, MaxConns: 2})
		holdConn(t, s)
		if resp, _ := s.get(t, "/v1/products"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
	})
	t.Run("503 over the limit, served again once the slow are cut", func(t *testing.T) {
		s := serve(t, nil, httpserve.Server{ReadTimeout: 500 * time.Millisecond, MaxConns: 2})
		_, slow1 := holdConn(t, s)
		_, slow2 := holdConn(t, s)
		resp, body := s.get(t, "/v1/products")
		assertProblem(t, resp, body, http.StatusServiceUnavailable, "overloaded")
		if resp.Header.Get("Retry-After") == "" || !resp.Close {
			t.Errorf("Retry-After %q, close %v; want both", resp.Header.Get("Retry-After"), resp.Close)
		}
		for _, br := range []*bufio.Reader{slow1, slow2} {
			r, b := readResponse(t, br, "POST")
			assertProblem(t, r, b, http.StatusRequestTimeout, "request_timeout")
		}
		// Their slots come free once the server has closed them.
		testutil.WaitFor(t, "good requests served again", func() bool {
			resp, _ := s.get(t, "/v1/products")
			return resp.StatusCode == http.StatusOK
		})
		if s.up.hasArrival("/v1/upload") {
			t.Error("a stalled upload reached the upstream")
		}
	})
	t.Run("beyond the refusals, closed at once", func(t *testing.T) {
		s := serve(t, nil, httpserve.Server{ReadTimeout: 10 * time.Second, MaxConns: 2})
		holdConn(t, s)
		holdConn(t, s)
		for range httpserve.OpenConns(2) - 2 {
			s.dial(t) // idle over the limit, waiting to be refused
		}
		c := s.dial(t)
		io.WriteString(c, "GET /v1/products HTTP/1.1\r\nHost: x\r\n\r\n")
		b, err := io.ReadAll(c)
		if len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
			t.Errorf("got %q, %v; want the connection closed at once", b, err)
		}
	})
}

// TestLocalShortageIsOverload: running out of file descriptors when dialling
// the API is khproxy's own overload (503), not an unreachable upstream.
func TestLocalShortageIsOverload(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE} {
		t.Run(errno.Error(), func(t *testing.T) {
			h := newHarness(t, nil, func(o *proxy.Options) {
				o.Transport = roundTripFunc(func(*http.Request) (*http.Response, error) {
					return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)}
				})
			})
			resp, body := h.do(t, "GET", "/v1/products", nil, nil)
			p := assertProblem(t, resp, body, http.StatusServiceUnavailable, "overloaded")
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(fmt.Sprint(p["detail"]), "khproxy") {
				t.Errorf("Retry-After %q, detail %q; want a retry hint saying it is khproxy's own shortage", resp.Header.Get("Retry-After"), p["detail"])
			}
		})
	}
}

// TestLogInDoubt: the requests sent upstream and unfinished are named, one
// log line each, with the key to check; one still waiting for room in the
// budget was never sent and is not.
func TestLogInDoubt(t *testing.T) {
	up := newSlowUpstream()
	defer close(up.release)
	s := serve(t, up.handle, httpserve.Server{ReadTimeout: time.Minute}, func(o *proxy.Options) {
		o.MaxInflightBytes = 1000
		o.BudgetWait = time.Minute
	})
	order := s.dial(t)
	io.WriteString(order, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	upload := s.dial(t)
	fmt.Fprintf(upload, "PUT /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n%s", strings.Repeat("u", 900))
	testutil.WaitFor(t, "both requests upstream", func() bool { return up.count() == 2 })
	waiting := s.dial(t)
	fmt.Fprintf(waiting, "PUT /v1/waiting HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n%s", strings.Repeat("w", 500))
	testutil.WaitFor(t, "a request waiting for room", func() bool { return s.p.BodyBudget().Waiting == 1 })

	if n := s.p.LogInDoubt(); n != 2 {
		t.Errorf("LogInDoubt = %d, want 2", n)
	}
	key := ""
	for _, a := range s.up.all() {
		if a.Method == "POST" {
			key = a.Header.Get("Idempotency-Key")
		}
	}
	logs := s.logs.String()
	for _, want := range []string{`"method":"POST","path":"/v1/orders","idempotency_key":"` + key + `"`, `"method":"PUT","path":"/v1/upload"`} {
		if key == "" || !strings.Contains(logs, want) || strings.Count(logs, "request in doubt") != 2 {
			t.Errorf("log lacks an in-doubt line with %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "/v1/waiting") {
		t.Error("a request never sent is logged as in doubt")
	}
}

// TestShutdownCutsUploadsStillArriving: at shutdown, a request still
// sending its body (nothing of it sent upstream) is answered 503 at once,
// and the shutdown finishes cleanly instead of waiting for it.
func TestShutdownCutsUploadsStillArriving(t *testing.T) {
	s := serve(t, nil, httpserve.Server{ReadTimeout: time.Minute})
	c := s.dial(t)
	io.WriteString(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"product_id\":")
	testutil.WaitFor(t, "the upload being received", func() bool { return s.p.BodyBudget().Reserved > 0 })
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	resp, body := readResponse(t, bufio.NewReader(c), "POST")
	assertProblem(t, resp, body, http.StatusServiceUnavailable, "shutting_down")
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v, want a clean stop", err)
	}
	if n := len(s.up.all()); n != 0 {
		t.Errorf("%d requests reached the upstream", n)
	}
}
