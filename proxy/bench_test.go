package proxy_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"khproxy/internal/testutil"
	"khproxy/proxy"
	"khproxy/signer"
)

// BenchmarkProxy sends requests through real loopback sockets to an upstream
// that answers like the API, three ways: straight to the upstream ("direct"),
// through a plain httputil.ReverseProxy that signs nothing ("plain", the limit
// for a Go proxy) and through khproxy. Every POST body is unique (a counter
// stamped into it), as khproxy answers identical in-flight requests once.
// ns/op, B/op and allocs/op count the client, proxy and upstream of one
// request, all in this process: compare the three targets of one size in
// one run, the difference is the proxy's cost.
//
//	go test ./proxy -run '^$' -bench Proxy -benchmem
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(benchUpstream))
	b.Cleanup(up.Close)
	kh := httptest.NewServer(newBenchProxy(b, up.URL+basePath))
	b.Cleanup(kh.Close)
	plain := httptest.NewServer(newPlainProxy(b, up.URL+basePath))
	b.Cleanup(plain.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}}
	b.Cleanup(client.CloseIdleConnections)

	for _, size := range []int{0, 1 << 10, 64 << 10, 1 << 20} {
		method, path, name := http.MethodPost, "/v1/orders", "POST-"+testutil.SizeName(size)
		if size == 0 {
			method, path, name = http.MethodGet, "/v1/products", "GET"
		}
		for _, target := range []struct {
			name, base string
			verify     bool
		}{
			{"direct", up.URL + basePath, false},
			{"plain", plain.URL, false},
			{"khproxy", kh.URL, true},
		} {
			b.Run(name+"/"+target.name, func(b *testing.B) {
				body := uniqueBody(size)
				b.SetBytes(int64(size))
				var n uint64
				for b.Loop() {
					n++
					body.stamp(n)
					req, err := http.NewRequest(method, target.base+path, body.reader())
					if err != nil {
						b.Fatal(err)
					}
					if target.verify && n == 1 {
						req.Header.Set(benchVerify, "1")
					}
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		}
	}
}

// benchVerify asks benchUpstream to check the request's signature. The
// benchmark sets it on the first request through khproxy only, so that the
// upstream's own hashing does not weigh on the comparison.
const benchVerify = "X-Bench-Verify"

// benchUpstream answers like the API: it reads the whole body and sends a
// small JSON document. With benchVerify set it first checks the signature.
func benchUpstream(w http.ResponseWriter, r *http.Request) {
	var body []byte
	var err error
	if r.Header.Get(benchVerify) != "" {
		body, err = io.ReadAll(r.Body)
		if err == nil {
			err = verify(r.Method, r.RequestURI, r.Header, body)
		}
	} else {
		_, err = io.Copy(io.Discard, r.Body)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "01HX7Z3K8QBENCHREQUESTID00")
	_, _ = io.WriteString(w, `{"data":{"id":1234,"status":"active"}}`)
}

// newBenchProxy is khproxy as run.go builds it by default, its access log
// formatted as JSON and discarded.
func newBenchProxy(tb testing.TB, upstream string) *proxy.Proxy {
	tb.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := proxy.New(proxy.Options{
		Upstream:         u,
		Signer:           &signer.Signer{Key: testKey, Secret: signer.StaticSecret(testSecret)},
		IdempotentRoutes: testutil.Patterns(tb, "POST /v1/orders"),
		RetryMax:         3,
		Logger:           slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// newPlainProxy is a stock httputil.ReverseProxy to upstream with a connection
// pool as large as khproxy's: what a Go proxy costs that signs nothing.
func newPlainProxy(tb testing.TB, upstream string) *httputil.ReverseProxy {
	tb.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		tb.Fatal(err)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport: t,
	}
}

// benchBody is a JSON request body of a fixed size whose first bytes carry
// a counter, so that every request's body can differ without allocating.
type benchBody struct {
	b []byte
	r bytes.Reader
}

const bodyPrefix = `{"n":"`

// uniqueBody returns a body of exactly size bytes (0: no body), a JSON object
// {"n":"<16 hex digits>","pad":"xxx…"} once size allows it.
func uniqueBody(size int) *benchBody {
	b := bytes.Repeat([]byte("x"), size)
	const frame = len(bodyPrefix) + 16 + len(`","pad":"`) + len(`"}`)
	if size >= frame {
		copy(b, bodyPrefix+"0000000000000000"+`","pad":"`)
		copy(b[size-2:], `"}`)
	}
	return &benchBody{b: b}
}

// stamp writes n into the body's counter.
func (bb *benchBody) stamp(n uint64) {
	if len(bb.b) < len(bodyPrefix)+16 {
		return
	}
	var c [8]byte
	binary.BigEndian.PutUint64(c[:], n)
	hex.Encode(bb.b[len(bodyPrefix):], c[:])
}

// reader returns the body from its start, or nil when it is empty.
func (bb *benchBody) reader() io.Reader {
	if len(bb.b) == 0 {
		return nil
	}
	bb.r.Reset(bb.b)
	return &bb.r
}
