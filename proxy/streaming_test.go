package proxy_test

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"khproxy/internal/httpserve"
	"khproxy/internal/testutil"
	"khproxy/proxy"
)

// TestStalledUpstreamBodyStatusAtOnce: the API sends its headers and a few
// bytes of a declared-length body, then pauses. The client has the status
// and those bytes while the API still pauses.
func TestStalledUpstreamBodyStatusAtOnce(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "abc")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "defghij")
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	type result struct {
		resp  *http.Response
		first string
		err   error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := h.proxy.Client().Get(h.proxy.URL + "/v1/orders/1")
		if err != nil {
			got <- result{err: err}
			return
		}
		first := make([]byte, 3)
		_, err = io.ReadFull(resp.Body, first)
		got <- result{resp, string(first), err}
	}()
	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("no status while the API pauses in its body")
	}
	if r.resp == nil {
		t.Fatal(r.err)
	}
	resp := r.resp
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || r.first != "abc" || r.err != nil {
		t.Fatalf("status %d, first bytes %q, %v; want 201 and abc while the API pauses", resp.StatusCode, r.first, r.err)
	}
	close(release)
	if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "defghij" {
		t.Errorf("rest %q, %v", rest, err)
	}
}

// TestUpstreamBodyFailures: once the answer has started, an upstream body
// that stalls past the idle timeout or breaks is cut, so that the client
// sees a truncated body and never a short one that looks complete.
func TestUpstreamBodyFailures(t *testing.T) {
	tests := []struct {
		name      string
		then      func(w http.ResponseWriter, r *http.Request)
		wantError string // in the access log
	}{
		{"idle past the idle timeout", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, "upstream_timeout"},
		{"connection broken", func(w http.ResponseWriter, r *http.Request) { dropConn(w) }, "upstream_unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "10")
				io.WriteString(w, "abc")
				w.(http.Flusher).Flush()
				tt.then(w, r)
			}, httpserve.Server{ReadTimeout: 10 * time.Second}, func(o *proxy.Options) {
				o.UpstreamIdleTimeout = 200 * time.Millisecond
			})
			c := s.dial(t)
			io.WriteString(c, "GET /v1/products HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(body) != "abc" || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("status %d, body %q, error %v; want 200, abc, then the connection cut", resp.StatusCode, body, err)
			}
			testutil.WaitFor(t, "the access-log line", func() bool { return strings.Contains(s.logs.String(), `"msg":"request"`) })
			if !strings.Contains(s.logs.String(), tt.wantError) {
				t.Errorf("the access log does not name %s:\n%s", tt.wantError, s.logs.String())
			}
		})
	}
	t.Run("broken before any body byte", func(t *testing.T) {
		// Whether the status line went out before the break is a race
		// (headers are forwarded at once): either way the client must
		// learn that the answer failed.
		s := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			dropConn(w)
		}, httpserve.Server{ReadTimeout: 10 * time.Second})
		c := s.dial(t)
		io.WriteString(c, "GET /v1/products HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer at all: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		switch {
		case resp.StatusCode == http.StatusBadGateway:
			assertProblem(t, resp, body, http.StatusBadGateway, "upstream_unreachable")
		case !errors.Is(err, io.ErrUnexpectedEOF):
			t.Errorf("status %d, body %q, error %v; want a 502 problem or a cut connection", resp.StatusCode, body, err)
		}
	})
}

// TestNoContentTypeAdded: an answer without Content-Type reaches the client
// without one; Go's server would otherwise sniff one from the body.
func TestNoContentTypeAdded(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil // the test upstream must not sniff either
		io.WriteString(w, "<html><body>hello</body></html>")
	})
	for _, path := range []string{"/v1/page", "/v1/orders"} {
		method := map[string]string{"/v1/page": "GET", "/v1/orders": "POST"}[path] // POST /v1/orders is a flight leader
		resp, body := h.do(t, method, path, nil, nil)
		if _, ok := resp.Header["Content-Type"]; ok || string(body) != "<html><body>hello</body></html>" {
			t.Errorf("%s %s: Content-Type %q, body %q; want none and the body unchanged", method, path, resp.Header.Get("Content-Type"), body)
		}
	}
}
