package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"khproxy/internal/httpserve"
)

// TestChunkedBodiesOfEverySize sends chunked bodies around the sizes where
// khproxy's reading changes step; each goes out whole, signed, with a
// Content-Length.
func TestChunkedBodiesOfEverySize(t *testing.T) {
	h := newHarness(t, nil)
	for _, size := range []int{1, 32<<10 - 1, 32 << 10, 32<<10 + 1, 300 << 10, 2 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			body := bytes.Repeat([]byte("abcdefgh"), size/8+1)[:size]
			var req strings.Builder
			req.WriteString("POST /v1/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
			for rest := body; len(rest) > 0; {
				n := min(len(rest), 7000)
				fmt.Fprintf(&req, "%x\r\n%s\r\n", n, rest[:n])
				rest = rest[n:]
			}
			req.WriteString("0\r\n\r\n")
			a := h.rawOK(t, req.String())
			if !bytes.Equal(a.Body, body) || a.Chunked || a.ContentLength != int64(size) {
				t.Errorf("upstream got %d bytes (chunked %v, length %d), want the %d sent", len(a.Body), a.Chunked, a.ContentLength, size)
			}
		})
	}
}

// TestAmbiguousFramingClosesConnection sends requests whose framing a front
// end could read differently, each hiding a second, automatically keyed
// order in what follows: the first is answered, its connection closed, and
// the hidden one never reaches the API.
func TestAmbiguousFramingClosesConnection(t *testing.T) {
	const hidden = "POST /v1/orders?hidden=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
	chunked := "2\r\n{}\r\n0\r\n\r\n"
	tests := []struct{ name, req string }{
		{"Transfer-Encoding and Content-Length", "POST /v1/orders HTTP/1.1\r\nHost: x\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n", len(chunked)+len(hidden)) + "Transfer-Encoding: chunked\r\n\r\n" + chunked + hidden},
		{"Content-Length and Transfer-Encoding", "POST /v1/orders HTTP/1.1\r\nHost: x\r\n" +
			"Transfer-Encoding: chunked\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(chunked)+len(hidden)) + chunked + hidden},
		{"Transfer-Encoding on HTTP/1.0", "POST /v1/orders HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n" + hidden},
		{"Transfer-Encoding and Content-Length on HTTP/1.0", "POST /v1/orders HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n" +
			"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + hidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, nil, httpserve.Server{ReadTimeout: 10 * time.Second})
			c := s.dial(t)
			io.WriteString(c, tt.req)
			br := bufio.NewReader(c)
			resp, _ := readResponse(t, br, "POST")
			if resp.StatusCode != http.StatusOK || !resp.Close {
				t.Errorf("status %d, Connection: close %v; want the request answered and the connection closing", resp.StatusCode, resp.Close)
			}
			wantClosed(t, br)
			if s.up.hasArrival("hidden") {
				t.Error("the hidden request reached the upstream")
			}
			if n := len(s.up.all()); n > 1 {
				t.Errorf("%d requests reached the upstream, want at most the first", n)
			}
		})
	}
	// The check above can tell: a plainly framed request keeps its
	// connection, and the next request on it is served.
	t.Run("control: Content-Length alone keeps the connection", func(t *testing.T) {
		s := serve(t, nil, httpserve.Server{ReadTimeout: 10 * time.Second})
		c := s.dial(t)
		io.WriteString(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"+hidden)
		br := bufio.NewReader(c)
		readResponse(t, br, "POST")
		if resp, _ := readResponse(t, br, "POST"); resp.StatusCode != http.StatusOK || !s.up.hasArrival("hidden") {
			t.Errorf("second request: status %d, arrived %v", resp.StatusCode, s.up.hasArrival("hidden"))
		}
	})
}
