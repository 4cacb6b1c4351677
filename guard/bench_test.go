package guard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"khproxy/guard"
	"khproxy/internal/testutil"
	"khproxy/proxy"
	"khproxy/signer"
)

// BenchmarkOrderThroughProxy sends orders through a real proxy on loopback
// to a stub API that answers at once, without and with the guard (order and
// spend limit, in-process counters, the price cached), so that the
// difference is what the guard adds to an order end to end.
func BenchmarkOrderThroughProxy(b *testing.B) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			io.WriteString(w, `{"id":42,"currency":"EUR","prices":{"monthly":"9.99"}}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":1001,"status":"paid","amount":"9.99","currency":"EUR"}`)
	}))
	defer api.Close()
	base, _ := url.Parse(api.URL)
	for _, withGuard := range []bool{false, true} {
		name := "no guard"
		if withGuard {
			name = "guard"
		}
		b.Run(name, func(b *testing.B) {
			opts := proxy.Options{Upstream: base, RetryMax: 0,
				Signer:           &signer.Signer{Key: "kh_live_BENCH", Secret: signer.StaticSecret("bench-secret-bench-secret")},
				IdempotentRoutes: testutil.Patterns(b, "POST /v1/orders")}
			if withGuard {
				now := time.Now()
				g, err := guard.New(guard.Options{Orders: 1000, OrderPer: time.Hour, Spend: guard.Money{Cents: 1 << 50, Currency: "EUR"},
					SpendPer: time.Hour, Prices: &guard.HTTPPrices{Client: api.Client(), Base: base},
					Now: func() time.Time { now = now.Add(36 * time.Second); return now }})
				if err != nil {
					b.Fatal(err)
				}
				opts.Gates = []proxy.Gate{g}
			}
			p, err := proxy.New(opts)
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(p)
			defer srv.Close()
			client := srv.Client()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Post(srv.URL+"/v1/orders", "application/json", strings.NewReader(testutil.OrderBody))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
