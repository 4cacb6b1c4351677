package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"khproxy/internal/testutil"
)

// get sends method to url and returns the status and body.
func get(t testing.TB, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, b := testutil.Do(t, http.DefaultClient, req)
	return resp.StatusCode, string(b)
}

// serve starts a's handler on a real socket.
func serve(t testing.TB, a *Admin) string {
	t.Helper()
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestProbes(t *testing.T) {
	failing := Named("upstream API", CheckFunc(func(context.Context) error {
		return errors.Join(errors.New("GET /v1/health: 503 Service Unavailable"), errors.New("second line"))
	}))
	passing := CheckFunc(func(context.Context) error { return nil })
	tests := []struct {
		name       string
		checks     []Check
		lifecycle  func(*Admin)
		wantReady  int
		wantReason string
	}{
		{"before Started", []Check{passing}, func(*Admin) {}, 503, "not ready: starting\n"},
		{"started", []Check{passing}, (*Admin).Started, 200, "ok\n"},
		{"started, no checks", nil, (*Admin).Started, 200, "ok\n"},
		{"started, check failing", []Check{passing, failing}, (*Admin).Started, 503,
			"not ready: upstream API: GET /v1/health: 503 Service Unavailable; second line\n"},
		{"stopping", []Check{passing}, func(a *Admin) { a.Started(); a.Stopping() }, 503, "not ready: shutting down\n"},
		{"Started after Stopping", []Check{passing}, func(a *Admin) { a.Stopping(); a.Started() }, 503, "not ready: shutting down\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(prometheus.NewRegistry(), tt.checks...)
			tt.lifecycle(a)
			base := serve(t, a)
			if code, body := get(t, "GET", base+PathReadyz); code != tt.wantReady || body != tt.wantReason {
				t.Errorf("GET /readyz = %d %q, want %d %q", code, body, tt.wantReady, tt.wantReason)
			}
			// Liveness never depends on readiness.
			if code, body := get(t, "GET", base+PathHealthz); code != 200 || body != "ok\n" {
				t.Errorf("GET /healthz = %d %q, want 200 ok", code, body)
			}
		})
	}
}

func TestHandlerRoutes(t *testing.T) {
	a := New(prometheus.NewRegistry())
	a.Started()
	base := serve(t, a)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", PathHealthz, 200},
		{"HEAD", PathHealthz, 200},
		{"GET", PathReadyz, 200},
		{"HEAD", PathReadyz, 200},
		{"GET", PathMetrics, 200},
		{"POST", PathReadyz, 405},
		{"DELETE", PathMetrics, 405},
		{"GET", "/", 404},
		{"GET", "/v1/products", 404},
		{"GET", "/healthz/", 404},
		{"GET", "/debug/pprof/", 404},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			if code, _ := get(t, tt.method, base+tt.path); code != tt.want {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.path, code, tt.want)
			}
		})
	}
}

func TestNoGathererNoMetrics(t *testing.T) {
	base := serve(t, New(nil))
	if code, _ := get(t, "GET", base+PathMetrics); code != 404 {
		t.Errorf("GET /metrics without a gatherer = %d, want 404", code)
	}
}

// TestCheckTimeout: a check that hangs is cut off and makes the probe fail
// with its own error rather than hang the kubelet.
func TestCheckTimeout(t *testing.T) {
	hang := CheckFunc(func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	a := New(nil, Named("store", hang))
	a.Started()
	code, body := get(t, "GET", serve(t, a)+PathReadyz)
	if code != 503 || !strings.Contains(body, "store: context deadline exceeded") {
		t.Errorf("GET /readyz = %d %q, want 503 naming the store's timeout", code, body)
	}
}

func TestPaths(t *testing.T) {
	a := New(prometheus.NewRegistry())
	base := serve(t, a)
	for _, p := range Paths() {
		if code, _ := get(t, "GET", base+p); code == 404 {
			t.Errorf("Paths lists %s, which the handler does not serve", p)
		}
	}
}
