package upstream

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// recordingConn is a net.Conn whose writes are recorded; nothing else of it
// is used.
type recordingConn struct {
	net.Conn
	buf    bytes.Buffer
	writes int
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.buf.Write(p)
}

func TestUpstreamConnReadFrom(t *testing.T) {
	body := strings.Repeat("0123456789", 10000) // 100,000 bytes
	tests := []struct {
		name       string
		src        func() io.Reader
		want       string
		wantWrites int // 0: any
	}{
		{"held body in one write", func() io.Reader {
			return &io.LimitedReader{R: bytes.NewReader([]byte(body)), N: int64(len(body))}
		}, body, 1},
		{"limit below the body: only the limit", func() io.Reader {
			return &io.LimitedReader{R: bytes.NewReader([]byte(body)), N: 1234}
		}, body[:1234], 0},
		{"held body behind io.NopCloser, as the transport passes it", func() io.Reader {
			return &io.LimitedReader{R: io.NopCloser(bytes.NewReader([]byte(body))), N: int64(len(body))}
		}, body, 1},
		{"NopCloser with a limit below the body: only the limit", func() io.Reader {
			return &io.LimitedReader{R: io.NopCloser(bytes.NewReader([]byte(body))), N: 1234}
		}, body[:1234], 1},
		{"any other reader", func() io.Reader {
			return iotest.HalfReader(strings.NewReader(body))
		}, body, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recordingConn{}
			n, err := upstreamConn{rc}.ReadFrom(tt.src())
			if err != nil {
				t.Fatal(err)
			}
			if got := rc.buf.String(); n != int64(len(tt.want)) || got != tt.want {
				t.Errorf("wrote %d bytes (returned %d), want the %d bytes of the source", len(got), n, len(tt.want))
			}
			if tt.wantWrites > 0 && rc.writes != tt.wantWrites {
				t.Errorf("%d writes, want %d", rc.writes, tt.wantWrites)
			}
		})
	}
}

// countingConn counts the writes made to a real connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestHeldBodyThroughTransport sends a held body the way khproxy does, through
// a real http.Transport, which wraps the body and a limit around it before
// the connection's ReadFrom sees it: the body must still go out in one
// write after the one that carries the headers, not 32 KiB at a time.
func TestHeldBodyThroughTransport(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer srv.Close()
	var writes atomic.Int64
	dialer := &net.Dialer{}
	tr := &http.Transport{DialContext: dialUpstream(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: &writes}, nil
	})}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if b := <-got; !bytes.Equal(b, body) {
		t.Fatalf("the upstream got %d bytes, want the %d of the body", len(b), len(body))
	}
	// One write for the headers (with the body's first bytes, filling the
	// transport's 4 KiB buffer), one for the rest.
	if n := writes.Load(); n != 2 {
		t.Errorf("%d writes for a %d-byte body, want 2", n, len(body))
	}
}

// TestBodyLongerThanContentLength: a request body longer than its
// ContentLength is an error of http.Transport, and must stay one through
// upstreamConn, whatever the reader, rather than a body cut short without a
// word (a file's WriteTo reads ahead of what the limit lets through).
func TestBodyLongerThanContentLength(t *testing.T) {
	const n = 100 << 10
	data := bytes.Repeat([]byte("x"), n+100)
	path := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// The server never answers: an answer that came before the body's
	// extra bytes were written would win the race with the write error,
	// and the test would depend on timing. Only the write error (or the
	// deadline, for a body cut short without a word) ends a round trip.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer srv.Close()
	tests := []struct {
		name string
		body func(t *testing.T) io.Reader
	}{
		{"a file", func(t *testing.T) io.Reader {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}},
		{"a held body", func(*testing.T) io.Reader { return io.NopCloser(bytes.NewReader(data)) }},
		{"several readers", func(*testing.T) io.Reader {
			return io.MultiReader(iotest.HalfReader(bytes.NewReader(data[:n/2])), iotest.HalfReader(bytes.NewReader(data[n/2:])))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{DialContext: dialUpstream((&net.Dialer{}).DialContext)}
			defer tr.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, tt.body(t))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = n
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("a body of %d bytes sent as Content-Length %d without an error", len(data), n)
			}
			if !strings.Contains(err.Error(), "ContentLength") {
				t.Errorf("error = %v, want http.Transport's ContentLength error", err)
			}
		})
	}
}
