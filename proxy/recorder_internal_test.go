package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"khproxy/proxy/upstream"
	"khproxy/signer"
)

// TestAbortedAnswer: when ReverseProxy aborts an answer it could not copy
// whole, nothing sent yet means a 502 problem in its place; something sent
// means the connection must be cut. (Through sockets the two cases race,
// since headers are forwarded at once: see TestUpstreamBodyFailures.)
func TestAbortedAnswer(t *testing.T) {
	u, _ := url.Parse("http://upstream.invalid/base")
	p, err := New(Options{Upstream: u, Signer: &signer.Signer{Key: "k", Secret: signer.StaticSecret("s")}})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v1/x", nil)

	w := httptest.NewRecorder()
	rec := &recorder{ResponseWriter: w}
	rec.Header().Set("X-From-Upstream", "1")
	rec.WriteHeader(http.StatusOK)
	ex := &exchange{}
	ex.up.BodyErr = io.ErrUnexpectedEOF
	if v := p.aborted(rec, req, ex, http.ErrAbortHandler); v != nil {
		t.Fatalf("nothing was sent, yet the answer is cut (%v)", v)
	}
	if w.Code != http.StatusBadGateway || w.Header().Get("Content-Type") != "application/problem+json" || w.Header().Get("X-From-Upstream") != "" {
		t.Errorf("status %d, headers %v; want a 502 problem without the upstream's headers", w.Code, w.Header())
	}

	w = httptest.NewRecorder()
	rec = &recorder{ResponseWriter: w}
	rec.WriteHeader(http.StatusOK)
	rec.Write([]byte("abc"))
	ex = &exchange{}
	ex.up.BodyErr = upstream.ErrBodyIdle
	if v := p.aborted(rec, req, ex, http.ErrAbortHandler); v != http.ErrAbortHandler {
		t.Errorf("the answer had started, yet it is not cut (%v)", v)
	}
	if ex.err == nil || ex.err.Kind != KindTimeout {
		t.Errorf("logged error %v, want an upstream_timeout", ex.err)
	}
	if v := p.aborted(rec, req, ex, "another panic"); v != "another panic" {
		t.Errorf("other panics must pass through, got %v", v)
	}
}

// TestFlushComplete: a finished answer goes out before the bookkeeping only
// when its length is declared; one without Content-Length is left for the
// server to frame (a flush would make it chunked), and so is one whose
// status line has not gone out.
func TestFlushComplete(t *testing.T) {
	tests := []struct {
		name        string
		header      http.Header
		body        string
		send        bool // the status line has gone to the real writer
		wantFlushed bool
	}{
		{"declared length", http.Header{"Content-Length": {"3"}}, "abc", true, true},
		{"no Content-Length", http.Header{}, "abc", true, false},
		{"nothing sent yet", http.Header{"Content-Length": {"0"}}, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			rec := &recorder{ResponseWriter: w}
			for k, v := range tt.header {
				rec.Header()[k] = v
			}
			rec.WriteHeader(http.StatusOK)
			if tt.body != "" {
				rec.Write([]byte(tt.body))
			} else if tt.send {
				rec.sendHeader()
			}
			rec.flushComplete()
			if w.Flushed != tt.wantFlushed {
				t.Errorf("flushed = %v, want %v", w.Flushed, tt.wantFlushed)
			}
		})
	}
}
