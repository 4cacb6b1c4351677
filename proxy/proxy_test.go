package proxy_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/proxy"
)

func TestSignsExactlyWhatIsSent(t *testing.T) {
	h := newHarness(t, nil)
	binary := []byte{0, 1, 2, 0xff, 0xfe, '\r', '\n', 0}
	mib := make([]byte, 1<<20)
	rand.Read(mib)
	tests := []struct {
		name, method, target string
		body                 []byte
		wantTarget           string // when the wire form differs from target
	}{
		{"GET plain", "GET", "/v1/products", nil, ""},
		{"query encodings", "GET", "/v1/products?q=a%20b&x=1%2F2&y=c+d&z=%3D", nil, ""},
		{"repeated unsorted params", "GET", "/v1/services?sort=z&page=2&sort=a&page=1", nil, ""},
		{"lowercase escapes kept", "GET", "/v1/products?q=%c3%a9", nil, ""},
		{"empty query kept", "GET", "/v1/products?", nil, ""},
		{"semicolon in query kept", "GET", "/v1/products?a=1;b=2", nil, ""},
		{"percent-encoded path", "GET", "/v1/caf%C3%A9/a%2Fb", nil, ""},
		{"raw UTF-8 path is percent-encoded, signed as sent", "GET", "/v1/café/世界?q=é", nil, "/v1/caf%C3%A9/%E4%B8%96%E7%95%8C?q=é"},
		{"other escapes kept beside a raw byte", "GET", "/v1/a%2Fb/ü|x%7c", nil, "/v1/a%2Fb/%C3%BC%7Cx%7c"},
		{"sub-delims and brackets", "GET", "/v1/a;b=c,d@e:f!$&'()*+[x]", nil, "/v1/a;b=c,d@e:f!$&'()*+%5Bx%5D"},
		{"HEAD", "HEAD", "/v1/products/42", nil, ""},
		{"DELETE", "DELETE", "/v1/things/1", nil, ""},
		{"PUT JSON", "PUT", "/v1/webhooks", []byte(`{"url":"https://example.com/hook"}`), ""},
		{"PATCH JSON", "PATCH", "/v1/things/1", []byte(`{"a":1}`), ""},
		{"POST empty", "POST", "/v1/services/7/actions", nil, ""},
		{"POST JSON", "POST", "/v1/orders", []byte(`{"product_id":42,"billing_cycle":"monthly"}`), ""},
		{"POST binary", "POST", "/v1/upload", binary, ""},
		{"POST 1 MiB", "POST", "/v1/upload", mib, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: proxy.local\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
				tt.method, tt.target, len(tt.body), tt.body)
			a := h.rawOK(t, req)
			want := basePath + tt.target
			if tt.wantTarget != "" {
				want = basePath + tt.wantTarget
			}
			if got := a.RequestURI; got != want {
				t.Errorf("upstream request-target = %q, want %q", got, want)
			}
			if a.Method != tt.method {
				t.Errorf("method = %s, want %s", a.Method, tt.method)
			}
			if !bytes.Equal(a.Body, tt.body) {
				t.Errorf("body differs: got %d bytes, want %d", len(a.Body), len(tt.body))
			}
			if a.Chunked {
				t.Error("body went upstream chunked, want a Content-Length")
			}
		})
	}
}

func TestChunkedBodyGoesOutWithLength(t *testing.T) {
	h := newHarness(t, nil)
	body := `{"product_id":42,"billing_cycle":"monthly"}`
	req := "POST /v1/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", 10, body[:10], len(body)-10, body[10:])
	a := h.rawOK(t, req)
	if a.Chunked || a.ContentLength != int64(len(body)) {
		t.Errorf("upstream chunked=%v Content-Length=%d, want a fixed length %d", a.Chunked, a.ContentLength, len(body))
	}
	if string(a.Body) != body {
		t.Errorf("body = %q, want %q", a.Body, body)
	}
}

func TestBodyTooLarge(t *testing.T) {
	h := newHarness(t, nil, func(o *proxy.Options) { o.MaxBodyBytes = 1000 })
	big := strings.Repeat("x", 1001)
	tests := []struct{ name, req string }{
		{"declared length", fmt.Sprintf("POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(big), big)},
		{"chunked", fmt.Sprintf("POST /v1/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(big), big)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.raw(t, tt.req)
			assertProblem(t, resp, body, http.StatusRequestEntityTooLarge, "body_too_large")
		})
	}
	if n := len(h.up.all()); n != 0 {
		t.Errorf("%d requests reached the upstream, want none", n)
	}
	// Exactly at the limit is fine.
	resp, _ := h.do(t, "POST", "/v1/orders", strings.NewReader(big[:1000]), nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("body at the limit: status = %d, want 200", resp.StatusCode)
	}
}

func assertProblem(t testing.TB, resp *http.Response, body []byte, status int, kind string) map[string]any {
	t.Helper()
	p := testutil.Problem(t, resp, body, status)
	if got, want := p["type"], proxy.TypePrefix+kind; got != want {
		t.Errorf("type = %v, want %s", got, want)
	}
	if p["title"] == "" || p["detail"] == "" {
		t.Errorf("title or detail empty: %s", body)
	}
	return p
}

func TestSpoofedAuthHeadersAreReplaced(t *testing.T) {
	h := newHarness(t, nil)
	req := "GET /v1/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
		"KH-Key: kh_live_SPOOFEDSPOOFEDSPOOFEDSPOOFED12\r\nkh-key: another\r\n" +
		"KH-Timestamp: 1\r\nKH-Nonce: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nKH-Signature: " + strings.Repeat("0", 64) + "\r\n\r\n"
	a := h.rawOK(t, req)
	if a.Header.Get("KH-Nonce") == "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" || a.Header.Get("KH-Timestamp") == "1" {
		t.Error("a client-sent KH-* value reached the upstream")
	}
}

func TestConnectionHeaderCannotStripSignature(t *testing.T) {
	h := newHarness(t, nil)
	req := "GET /v1/me HTTP/1.1\r\nHost: x\r\nConnection: close, KH-Key, KH-Signature, KH-Nonce, KH-Timestamp, X-Custom, Idempotency-Key\r\n" +
		"X-Custom: hop\r\nX-Keep: end-to-end\r\nIdempotency-Key: k1\r\n\r\n"
	a := h.rawOK(t, req)
	if got := a.Header.Get("X-Custom"); got != "" {
		t.Errorf("X-Custom, named in Connection, reached upstream as %q", got)
	}
	if got := a.Header.Get("X-Keep"); got != "end-to-end" {
		t.Errorf("X-Keep = %q, want end-to-end", got)
	}
	// The retry rules count on the key: it must reach the API.
	if got := a.Header.Values("Idempotency-Key"); len(got) != 1 || got[0] != "k1" {
		t.Errorf("Idempotency-Key = %q, want k1", got)
	}
}

func TestUpgradeIsNotForwarded(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.raw(t, "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n")
	if resp.StatusCode != 200 || string(body) != `{"ok":true}` {
		t.Errorf("status %d body %s, want the plain answer", resp.StatusCode, body)
	}
	a := h.up.last(t)
	if a.Header.Get("Upgrade") != "" || a.Header.Get("Connection") != "" {
		t.Errorf("upstream saw Upgrade %q Connection %q", a.Header.Get("Upgrade"), a.Header.Get("Connection"))
	}
}

func TestBasePathWithEscapes(t *testing.T) {
	up := newUpstream(t, nil)
	h := newHarnessFor(t, up, up.URL+"/cp/kh%5Freseller_api")
	resp, _ := h.raw(t, "GET /v1/ü?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 401 { // the test upstream expects the plain base path
		t.Errorf("status %d", resp.StatusCode)
	}
	if got, want := h.up.last(t).RequestURI, "/cp/kh%5Freseller_api/v1/%C3%BC?x=1"; got != want {
		t.Errorf("upstream got %q, want %q", got, want)
	}
	testutil.WaitFor(t, "the access-log line", func() bool { return strings.Contains(h.logs.String(), `"msg":"request"`) })
	if !strings.Contains(h.logs.String(), `"path":"/v1/%C3%BC?x=1"`) {
		t.Errorf("signed path is not the target after the base:\n%s", h.logs.String())
	}
}

func TestHeadersForwardedUnchanged(t *testing.T) {
	h := newHarness(t, nil)
	req := "POST /v1/things HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\nContent-Length: 2\r\n" +
		"Content-Type: application/json\r\nAccept-Encoding: br\r\nUser-Agent: my-app/1.0\r\n" +
		"X-Forwarded-For: 203.0.113.9\r\nX-Multi: a\r\nX-Multi: b\r\nExpect: 100-continue\r\n\r\n{}"
	resp, _ := h.raw(t, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	a := h.up.last(t)
	if want := strings.TrimPrefix(h.up.URL, "http://"); a.Host != want {
		t.Errorf("Host = %q, want the upstream's %q", a.Host, want)
	}
	for name, want := range map[string][]string{
		"Content-Type":    {"application/json"},
		"Accept-Encoding": {"br"},
		"User-Agent":      {"my-app/1.0"},
		"X-Forwarded-For": {"203.0.113.9"},
		"X-Multi":         {"a", "b"},
	} {
		if got := a.Header.Values(name); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "Idempotency-Key"} {
		if got := a.Header.Values(name); len(got) != 0 {
			t.Errorf("%s = %q, want absent", name, got)
		}
	}
}

func TestTargetIsAlwaysTheUpstream(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct{ name, target, want string }{
		{"absolute-form", "http://evil.example/v1/products?page=2", basePath + "/v1/products?page=2"},
		{"absolute-form no path", "http://evil.example", basePath + "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := h.raw(t, "GET "+tt.target+" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			if a := h.up.last(t); a.RequestURI != tt.want || a.SigErr != nil {
				t.Errorf("upstream got %q (sig %v), want %q", a.RequestURI, a.SigErr, tt.want)
			}
		})
	}
}

func TestRefusedRequests(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name, req, kind string
		status          int
	}{
		{"CONNECT", "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n", "method_not_allowed", 405},
		{"asterisk", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", "bad_request", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.raw(t, tt.req)
			assertProblem(t, resp, body, tt.status, tt.kind)
		})
	}
	if n := len(h.up.all()); n != 0 {
		t.Errorf("%d requests reached the upstream", n)
	}
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t, nil)
	hexKey := regexp.MustCompile(`^[0-9a-f]{32}$`)
	tests := []struct {
		name, method, path string
		clientKey          string
		wantAuto           bool
	}{
		{"order gets a key", "POST", "/v1/orders", "", true},
		{"service action gets a key", "POST", "/v1/services/srv_17/actions", "", true},
		{"client key kept byte for byte", "POST", "/v1/orders", "My.Key_-01", false},
		{"other POST gets none", "POST", "/v1/webhooks", "", false},
		{"GET of orders gets none", "GET", "/v1/orders", "", false},
		{"actions needs one segment", "POST", "/v1/services//actions", "", false},
		{"client key on other route kept", "PUT", "/v1/webhooks", "abc", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			if tt.clientKey != "" {
				hdr.Set("Idempotency-Key", tt.clientKey)
			}
			resp, _ := h.do(t, tt.method, tt.path, strings.NewReader("{}"), hdr)
			a := h.up.last(t)
			sent := a.Header.Values("Idempotency-Key")
			switch {
			case tt.wantAuto:
				if len(sent) != 1 || !hexKey.MatchString(sent[0]) {
					t.Errorf("upstream Idempotency-Key = %q, want one 32-hex key", sent)
				}
			case tt.clientKey != "":
				if len(sent) != 1 || sent[0] != tt.clientKey {
					t.Errorf("upstream Idempotency-Key = %q, want %q", sent, tt.clientKey)
				}
			default:
				if len(sent) != 0 {
					t.Errorf("upstream Idempotency-Key = %q, want none", sent)
				}
			}
			if got, want := resp.Header.Get("Idempotency-Key"), strings.Join(sent, ","); got != want {
				t.Errorf("response Idempotency-Key = %q, want the one sent upstream %q", got, want)
			}
		})
	}
}

func TestFreshNonceUnderConcurrency(t *testing.T) {
	h := newHarness(t, nil)
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := h.proxy.Client().Get(fmt.Sprintf("%s/v1/services?page=%d", h.proxy.URL, i))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status = %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	nonces := map[string]bool{}
	for _, a := range h.up.all() {
		if a.SigErr != nil {
			t.Error(a.SigErr)
		}
		nonces[a.Header.Get("KH-Nonce")] = true
	}
	if len(nonces) != n {
		t.Errorf("%d distinct nonces over %d requests, want %d", len(nonces), len(h.up.all()), n)
	}
}

func TestResponsePassesThrough(t *testing.T) {
	pdf := append([]byte("%PDF-1.4\n"), 0, 0xff, 0x80, '\n')
	pdf = append(pdf, []byte("%%EOF\n")...)
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case basePath + "/v1/billing/invoices/7/pdf":
			w.Header().Set("Content-Type", "application/pdf")
			w.Header().Set("X-Request-Id", "01HX7Z3K8QPDF")
			w.Write(pdf)
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "17")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", "1700000060")
			w.Header().Set("X-Request-Id", "01HX7Z3K8QLIMIT")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"type":"rate_limited","status":429}`)
		}
	})
	resp, body := h.do(t, "GET", "/v1/billing/invoices/7/pdf", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" || !bytes.Equal(body, pdf) {
		t.Errorf("PDF: status %d, type %q, body equal %v", resp.StatusCode, resp.Header.Get("Content-Type"), bytes.Equal(body, pdf))
	}
	resp, body = h.do(t, "GET", "/v1/products", nil, nil)
	if resp.StatusCode != http.StatusTooManyRequests || string(body) != `{"type":"rate_limited","status":429}` {
		t.Errorf("429: status %d body %s", resp.StatusCode, body)
	}
	for name, want := range map[string]string{
		"Retry-After": "17", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000060",
		"X-Request-Id": "01HX7Z3K8QLIMIT", "Content-Type": "application/problem+json",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestResponseIsStreamed(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	})
	resp, err := h.proxy.Client().Get(h.proxy.URL + "/v1/events")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	_, err = io.ReadFull(resp.Body, buf)
	close(release)
	if err != nil || string(buf) != "first\n" {
		t.Fatalf("first chunk = %q, %v; want it before the upstream finished", buf, err)
	}
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second\n" {
		t.Errorf("rest = %q", rest)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		up := newUpstream(t, nil)
		dead := up.URL
		up.Close()
		h := newHarnessFor(t, up, dead+basePath)
		resp, body := h.do(t, "POST", "/v1/orders", strings.NewReader("{}"), nil)
		p := assertProblem(t, resp, body, http.StatusBadGateway, "upstream_unreachable")
		key := resp.Header.Get("Idempotency-Key")
		if key == "" || !strings.Contains(fmt.Sprint(p["detail"]), key) {
			t.Errorf("detail %q and header should name the Idempotency-Key %q", p["detail"], key)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}, func(o *proxy.Options) { o.UpstreamTimeout = 200 * time.Millisecond })
		defer close(release)
		resp, body := h.do(t, "GET", "/v1/products", nil, nil)
		assertProblem(t, resp, body, http.StatusGatewayTimeout, "upstream_timeout")
	})
	t.Run("slow body after headers is not cut", func(t *testing.T) {
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
			io.WriteString(w, "b")
		}, func(o *proxy.Options) { o.UpstreamTimeout = 100 * time.Millisecond })
		resp, body := h.do(t, "GET", "/v1/products", nil, nil)
		if resp.StatusCode != 200 || string(body) != "ab" {
			t.Errorf("status %d body %q, want 200 ab", resp.StatusCode, body)
		}
	})
}

func TestAccessLog(t *testing.T) {
	h := newHarness(t, nil)
	resp, _ := h.do(t, "POST", "/v1/orders?x=1", strings.NewReader(`{"product_id":42}`), nil)
	key := resp.Header.Get("Idempotency-Key")
	sig := h.up.last(t).Header.Get("KH-Signature")
	// The line is written once the response is out: wait for it.
	testutil.WaitFor(t, "the access-log line", func() bool { return strings.Contains(h.logs.String(), `"msg":"request"`) })
	var line map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(h.logs.String()), "\n") {
		if strings.Contains(l, `"msg":"request"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, want := range map[string]any{
		"msg": "request", "level": "INFO",
		"method": "POST", "route": "/v1/orders", "path": "/v1/orders?x=1", "status": float64(200),
		"attempts": float64(1), "idempotency_key": key, "idempotency_key_source": "auto",
		"request_id": resp.Header.Get(proxy.RequestIDHeader), "api_request_id": "01HX7Z3K8QTESTREQUESTID000",
		"upstream_status": float64(200),
	} {
		if line[k] != want {
			t.Errorf("log %s = %v, want %v", k, line[k], want)
		}
	}
	if id := resp.Header.Get(proxy.RequestIDHeader); len(id) < 16 {
		t.Errorf("%s = %q, want khproxy's own id", proxy.RequestIDHeader, id)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "01HX7Z3K8QTESTREQUESTID000" {
		t.Errorf("X-Request-Id = %q, want the API's, unchanged", got)
	}
	if d, ok := line["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("log duration_ms = %v, want a number of milliseconds", line["duration_ms"])
	}
	if _, ok := line["time"].(string); !ok {
		t.Error("log line has no time")
	}
	if strings.Contains(h.logs.String(), sig) {
		t.Error("the log contains the signature")
	}
}
