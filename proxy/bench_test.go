package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkOverhead compares a request sent straight to the test upstream
// (which verifies signatures, so the direct run sends none and gets 401) with
// the same request through the proxy. Compare ns/op of the sub-benchmarks of
// one run: go test ./proxy -run '^$' -bench Overhead -benchmem
func BenchmarkOverhead(b *testing.B) {
	h := newHarness(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	body := bytes.Repeat([]byte("x"), 64<<10)
	for _, c := range []struct {
		name string
		url  string
		body []byte
	}{
		{"direct/GET", h.up.URL + basePath + "/v1/products", nil},
		{"proxy/GET", h.proxy.URL + "/v1/products", nil},
		{"direct/POST-64KiB", h.up.URL + basePath + "/v1/upload", body},
		{"proxy/POST-64KiB", h.proxy.URL + "/v1/upload", body},
	} {
		b.Run(c.name, func(b *testing.B) {
			client := h.proxy.Client()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				resp, err := client.Post(c.url, "application/octet-stream", bytes.NewReader(c.body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
