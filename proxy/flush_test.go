package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"khproxy/proxy"
	"khproxy/signer"
)

// heldLog is a slog.Handler that holds every access-log line until the test
// lets it go, and tells the test when one arrives.
type heldLog struct {
	arrived chan struct{}
	release chan struct{}
}

func (h heldLog) Enabled(context.Context, slog.Level) bool { return true }
func (h heldLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h heldLog) WithGroup(string) slog.Handler            { return h }
func (h heldLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "request" {
		h.arrived <- struct{}{}
		<-h.release
	}
	return nil
}

// TestAnswerBeforeAccessLog checks that a complete answer of declared length
// reaches the client before khproxy writes its access-log line, so that a
// slow log (a full pipe to the container runtime) is never part of the
// client's wait; and that an answer without Content-Length keeps the
// framing it had (chunked when the API streamed it).
func TestAnswerBeforeAccessLog(t *testing.T) {
	tests := []struct {
		name        string
		path        string
		handle      http.HandlerFunc
		wantStatus  int
		wantChunked bool
		early       bool // the answer arrives while the log line is held
	}{
		{name: "API answer with Content-Length", path: "/v1/products", wantStatus: 200, early: true},
		{name: "khproxy's own problem", path: "/v1/a/../b", wantStatus: 400, early: true},
		{name: "API answer streamed", path: "/v1/products", wantStatus: 200, wantChunked: true,
			handle: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"part":1}`)
				http.NewResponseController(w).Flush()
				io.WriteString(w, `{"part":2}`)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, tt.handle)
			u, err := url.Parse(up.URL + basePath)
			if err != nil {
				t.Fatal(err)
			}
			log := heldLog{arrived: make(chan struct{}, 1), release: make(chan struct{})}
			p, err := proxy.New(proxy.Options{
				Upstream: u,
				Signer:   &signer.Signer{Key: testKey, Secret: signer.StaticSecret(testSecret)},
				Logger:   slog.New(log),
			})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(p)
			t.Cleanup(srv.Close)
			released := false
			release := func() {
				if !released {
					released = true
					close(log.release)
				}
			}
			t.Cleanup(release)

			type answer struct {
				resp *http.Response
				body []byte
				err  error
			}
			answered := make(chan answer, 1)
			go func() {
				resp, err := srv.Client().Get(srv.URL + tt.path)
				if err != nil {
					answered <- answer{err: err}
					return
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				answered <- answer{resp: resp, body: body, err: err}
			}()
			<-log.arrived
			if !tt.early {
				release()
			}
			var a answer
			select {
			case a = <-answered:
			case <-time.After(10 * time.Second):
				t.Fatal("no answer while the access-log line was held")
			}
			release()
			if a.err != nil {
				t.Fatal(a.err)
			}
			if got := a.resp.StatusCode; got != tt.wantStatus {
				t.Errorf("status = %d, want %d: %s", got, tt.wantStatus, a.body)
			}
			chunked := len(a.resp.TransferEncoding) > 0
			if chunked != tt.wantChunked {
				t.Errorf("chunked = %v (Content-Length %d), want chunked = %v", chunked, a.resp.ContentLength, tt.wantChunked)
			}
			if !chunked && a.resp.ContentLength != int64(len(a.body)) {
				t.Errorf("Content-Length = %d, body %d bytes", a.resp.ContentLength, len(a.body))
			}
		})
	}
}
