package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/signer"
)

// These are smoke tests of the benchmark's pieces; they measure nothing.

func TestUpstreamAndPlainProxy(t *testing.T) {
	up := httptest.NewServer(&api{key: benchKey, secret: []byte(benchSecret)})
	defer up.Close()
	u, _ := url.Parse(up.URL + basePath)
	plain := httptest.NewServer(newPlainProxy(u))
	defer plain.Close()

	signed := func(method, target, body string) http.Header {
		s := &signer.Signer{Key: benchKey, Secret: signer.StaticSecret(benchSecret)}
		h, err := s.Sign(method, target, signer.BodyHash([]byte(body)), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		hdr := http.Header{}
		h.Apply(hdr)
		return hdr
	}
	tests := []struct {
		name, method, target, body string
		header                     http.Header
		want                       int
	}{
		{"products", "GET", "/v1/products", "", nil, http.StatusOK},
		{"order", "POST", "/v1/orders", `{"thread":1,"n":000000000001,"pad":"xx"}`, nil, http.StatusCreated},
		{"verify signed", "POST", verifyPath + "?a=1", `{"x":1}`, signed("POST", verifyPath+"?a=1", `{"x":1}`), http.StatusOK},
		{"verify other body", "POST", verifyPath, `{"x":2}`, signed("POST", verifyPath, `{"x":1}`), http.StatusUnauthorized},
		{"verify unsigned", "POST", verifyPath, `{}`, nil, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, plain.URL+tt.target, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status = %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
		})
	}
}

func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "localhost:0", "10.0.0.1:0"} {
		if ln, err := listenLoopback(addr); err == nil {
			ln.Close()
			t.Errorf("listenLoopback(%q) succeeded, want an error", addr)
		}
	}
}

// TestNewConnOverTLS runs the newconn client against a TLS server with the
// benchmark's own certificates: every call is a new connection.
func TestNewConnOverTLS(t *testing.T) {
	files, err := writeTLSFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	newConns := 0
	bodies := map[[32]byte]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies[sha256.Sum256(b)] = len(b) == 300
		mu.Unlock()
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			newConns++
			mu.Unlock()
		}
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()

	var out bytes.Buffer
	err = dispatch(context.Background(), []string{"newconn", "-url", srv.URL + "/v1/orders", "-method", "POST", "-size", "300",
		"-workers", "2", "-n", "5", "-duration", "1m", "-ca", files.CA}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := parseResult(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 10 || res.failures() != 0 {
		t.Errorf("result %+v, want 10 requests and no failure", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if newConns != 10 || len(bodies) != 10 {
		t.Errorf("%d connections and %d distinct bodies, want 10 of each", newConns, len(bodies))
	}
	for _, ok := range bodies {
		if !ok {
			t.Error("a body is not 300 bytes")
		}
	}
}

// TestUniqueLua runs wrk with unique.lua for a second: every body must be of
// the size asked for, and no two alike.
func TestUniqueLua(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk not installed (Debian package wrk; bash bench/run installs it)")
	}
	var mu sync.Mutex
	seen := map[[32]byte]bool{}
	var n, wrongSize int
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		n++
		seen[sha256.Sum256(b)] = true
		if len(b) != 1024 || r.Method != "POST" || r.URL.Path != "/v1/orders" {
			wrongSize++
		}
	}))
	defer up.Close()
	script := filepath.Join(t.TempDir(), "unique.lua")
	if err := os.WriteFile(script, uniqueLua, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := runWrk(context.Background(), wrk, script, up.URL, 4, time.Second, allRequests[1])
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n == 0 || res.failures() != 0 {
		t.Fatalf("%d requests arrived, result %+v", n, res)
	}
	if len(seen) != n {
		t.Errorf("%d distinct bodies in %d requests, want all distinct", len(seen), n)
	}
	if wrongSize > 0 {
		t.Errorf("%d of %d requests were not POST /v1/orders with 1024 bytes", wrongSize, n)
	}
}

func TestParseBenchOptions(t *testing.T) {
	o, err := parseBenchOptions([]string{"-khproxy", "k", "-quick", "-requests", "GET,64KiB", "-conns", "8"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 3 || len(o.requests) != 2 || o.requests[1].size != 64<<10 || len(o.conns) != 1 || o.conns[0] != 8 {
		t.Errorf("options %+v", o)
	}
	for _, bad := range [][]string{{}, {"-khproxy", "k", "-conns", "x"}, {"-khproxy", "k", "-requests", "2MiB"}, {"-khproxy", "k", "-rounds", "0"}} {
		if _, err := parseBenchOptions(bad, io.Discard); err == nil {
			t.Errorf("parseBenchOptions(%q) succeeded, want an error", bad)
		}
	}
}

func TestCommandLineInReport(t *testing.T) {
	got := withoutKhproxyFlag([]string{"-khproxy", "/tmp/k", "-quick", "-label=x y", "--khproxy=/a", "-label", "z", "-conns", "16"})
	if want := []string{"-quick", "-conns", "16"}; !slices.Equal(got, want) {
		t.Errorf("withoutKhproxyFlag = %q, want %q", got, want)
	}
}
