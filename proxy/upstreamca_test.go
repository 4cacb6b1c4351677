package proxy_test

import (
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"khproxy/internal/testutil"
	"khproxy/proxy"
	"khproxy/signer"
)

// TestUpstreamRoots sends requests to an https upstream whose certificate
// only the test's CA pool trusts: with the pool they are signed and go over
// HTTP/2; with the system's roots they fail as unreachable and nothing
// arrives.
func TestUpstreamCAs(t *testing.T) {
	var mu sync.Mutex
	var protos []string
	up := &upstream{handle: func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.Proto)
		mu.Unlock()
		io.WriteString(w, `{"ok":true}`)
	}}
	up.Server = httptest.NewUnstartedServer(http.HandlerFunc(up.serve))
	up.EnableHTTP2 = true
	up.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	up.StartTLS()
	t.Cleanup(up.Close)

	t.Run("trusted", func(t *testing.T) {
		h := newHarnessFor(t, up, up.URL+basePath, func(o *proxy.Options) { o.UpstreamCAs = []*x509.Certificate{up.Certificate()} })
		resp, body := h.do(t, "POST", "/v1/orders", strings.NewReader(`{"product_id":42}`), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200: %s", resp.StatusCode, body)
		}
		if a := up.last(t); a.SigErr != nil {
			t.Errorf("upstream rejected the signature: %v", a.SigErr)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(protos) != 1 || protos[0] != "HTTP/2.0" {
			t.Errorf("upstream saw protocols %v, want one HTTP/2.0 request", protos)
		}
	})
	t.Run("system roots only", func(t *testing.T) {
		before := len(up.all())
		h := newHarnessFor(t, up, up.URL+basePath, func(o *proxy.Options) { o.RetryMax = 0 })
		resp, body := h.do(t, "GET", "/v1/products", nil, nil)
		assertProblem(t, resp, body, http.StatusBadGateway, "upstream_unreachable")
		if n := len(up.all()) - before; n != 0 {
			t.Errorf("%d requests arrived over an untrusted connection, want none", n)
		}
		// The access-log line, which says why, follows the answer.
		testutil.WaitFor(t, "a log line saying why the upstream was unreachable", func() bool {
			return strings.Contains(h.logs.String(), "certificate")
		})
	})
}

func TestUpstreamCAsWithTransport(t *testing.T) {
	_, err := proxy.New(proxy.Options{
		Upstream:    &url.URL{Scheme: "https", Host: "127.0.0.1:1"},
		Signer:      &signer.Signer{Key: testKey, Secret: signer.StaticSecret(testSecret)},
		Transport:   http.DefaultTransport,
		UpstreamCAs: []*x509.Certificate{},
	})
	if err == nil || !strings.Contains(err.Error(), "UpstreamCAs") {
		t.Errorf("New = %v, want an error naming UpstreamCAs", err)
	}
}
