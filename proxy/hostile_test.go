package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"khproxy/proxy"
	"khproxy/signer"
)

func TestDotSegmentsRefused(t *testing.T) {
	h := newHarness(t, nil)
	refused := []string{
		"/v1/../admin",
		"/v1/../../../admin",
		"/v1/./products",
		"/v1/..",
		"/v1/.",
		"/..",
		"/v1/products/42/..",
		"/v1/%2e%2e/admin",
		"/v1/%2E%2E/admin",
		"/v1/%2e%2E/admin",
		"/v1/.%2e/admin",
		"/v1/%2E./admin",
		"/v1/%2e/products",
		"/v1/%252e%252e/admin",
		"/v1/%25252E./admin",
		"/v1/..%2fadmin",
		"/v1/..%2Fadmin",
		"/v1/x%2f..%2f..%2fadmin",
		"/v1/..%5cadmin",
		"/v1/..\\admin",
		"/v1/x\\..\\..\\admin",
		"/v1/../admin?q=1",
		"http://evil.example/v1/../admin",
		"POST /v1/orders/..",
	}
	for _, target := range refused {
		t.Run(target, func(t *testing.T) {
			method := "GET"
			if m, rest, ok := strings.Cut(target, " "); ok {
				method, target = m, rest
			}
			resp, body := h.raw(t, method+" "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			p := assertProblem(t, resp, body, http.StatusBadRequest, "bad_request")
			if !strings.Contains(p["detail"].(string), "segment") {
				t.Errorf("detail %q does not say why", p["detail"])
			}
		})
	}
	if n := len(h.up.all()); n != 0 {
		t.Errorf("%d refused requests reached the upstream: %+v", n, h.up.all())
	}
	// Dots that are not whole segments, and dots in the query, are fine.
	// Encoded dots are unreserved characters: sent decoded.
	for target, sent := range map[string]string{"/v1/a.b": "", "/v1/...": "", "/v1/.x": "", "/v1/x.": "",
		"/v1/%2e%2e%2e": "/v1/...", "/v1/x%2e": "/v1/x.", "/v1/products?path=../x&d=.": ""} {
		if sent == "" {
			sent = target
		}
		t.Run("allowed "+target, func(t *testing.T) {
			a := h.rawOK(t, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if got, want := a.RequestURI, basePath+sent; got != want {
				t.Errorf("upstream got %q, want %q", got, want)
			}
		})
	}
}

// FuzzRequestTarget feeds the proxy arbitrary request-targets and checks
// every request it sends: the path stays under the upstream's base, and no
// decoding of it (percent-decoded at any depth, backslashes as slashes) has
// a dot segment.
func FuzzRequestTarget(f *testing.F) {
	for _, seed := range []string{
		"/v1/products", "/v1/../admin", "/v1/%2e%2e/x", "/v1/.%2E/x", "/v1/%252e%252e/x",
		"/v1/..%2f..%2fx", "/v1/..\\x", "http://evil/../x", "//evil/x", "/v1/a.b?x=../y",
		"/v1/caf\xc3\xa9/..", "*", "", "/%", "/v1/%zz", "/v1/%2", "/v1/%25%32%65%25%32%65/x",
	} {
		f.Add(seed)
	}
	var mu sync.Mutex
	var sent []string
	u, _ := url.Parse("http://upstream.invalid" + basePath)
	p, err := proxy.New(proxy.Options{
		Upstream: u,
		Signer:   &signer.Signer{Key: testKey, Secret: signer.StaticSecret(testSecret)},
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			sent = append(sent, r.URL.RequestURI())
			mu.Unlock()
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
		}),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target string) {
		mu.Lock()
		sent = sent[:0]
		mu.Unlock()
		r := &http.Request{Method: "GET", RequestURI: target, URL: &url.URL{Path: "/"}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: http.NoBody, Host: "x"}
		r = r.WithContext(context.Background())
		p.ServeHTTP(httptest.NewRecorder(), r)
		mu.Lock()
		defer mu.Unlock()
		for _, uri := range sent {
			path, _, _ := strings.Cut(uri, "?")
			if !strings.HasPrefix(path, basePath+"/") {
				t.Fatalf("target %q sent as %q: outside the base %s", target, uri, basePath)
			}
			if seg, ok := dotSegment(path); ok {
				t.Fatalf("target %q sent as %q: dot segment %q", target, uri, seg)
			}
		}
	})
}

// dotSegment decodes path with url.PathUnescape until it no longer changes
// or no longer decodes, and returns a "." or ".." segment found on the way,
// counting backslashes as slashes.
func dotSegment(path string) (string, bool) {
	for range 10 {
		for _, seg := range strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == '\\' }) {
			if slices.Contains([]string{".", ".."}, seg) {
				return seg, true
			}
		}
		decoded, err := url.PathUnescape(path)
		if err != nil || decoded == path {
			return "", false
		}
		path = decoded
	}
	return "", false
}
