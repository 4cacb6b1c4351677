package guard_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/guard"
	"khproxy/internal/testutil"
	"khproxy/proxy"
	"khproxy/signer"
)

func TestParseCents(t *testing.T) {
	for _, tt := range []struct {
		in      string
		roundUp bool
		want    int64
	}{
		{"9.99", false, 999}, {"100", false, 10000}, {"0.5", false, 50}, {"0", false, 0}, {"0.00", false, 0},
		{"9.991", true, 1000}, {"9.990", true, 999}, {"9.9900001", true, 1000}, {"10000000000000", false, 1000000000000000},
	} {
		got, err := guard.ParseCents(tt.in, tt.roundUp)
		if err != nil || got != tt.want {
			t.Errorf("ParseCents(%q, %v) = %d, %v; want %d", tt.in, tt.roundUp, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", ".", "9.", ".99", "-1", "+1", "1e3", "9,99", "9.99 ", "NaN", "9.991", "10000000000001", "99999999999999999999"} {
		if got, err := guard.ParseCents(bad, false); err == nil {
			t.Errorf("ParseCents(%q) = %d, want an error", bad, got)
		}
	}
	if got := guard.FormatCents(-1234); got != "-12.34" {
		t.Errorf("FormatCents(-1234) = %q", got)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	prices := &guard.HTTPPrices{}
	for _, tt := range []struct {
		name string
		opts guard.Options
		want string
	}{
		{"unknown route", guard.Options{Allow: testutil.Patterns(t, "GET /v1/product/{id}")}, "not an API route"},
		{"odd method", guard.Options{Allow: testutil.Patterns(t, "BREW /v1/products")}, "method"},
		{"order limit without count", guard.Options{OrderPer: time.Hour}, "order limit"},
		{"spend limit without currency", guard.Options{SpendPer: time.Hour, Spend: guard.Money{Cents: 100}, Prices: prices}, "spend limit"},
		{"spend limit without prices", guard.Options{SpendPer: time.Hour, Spend: guard.Money{Cents: 100, Currency: "EUR"}}, "PriceSource"},
	} {
		if _, err := guard.New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
}

// emulatorPrices returns HTTPPrices asking the emulator, signed as khproxy
// signs, and the emulator.
func emulatorPrices(t testing.TB) (*guard.HTTPPrices, *emulator.Emulator) {
	emu, key, secret := emulatortest.New(t)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	base, _ := url.Parse(srv.URL + emulator.DefaultBasePath)
	s := &signer.Signer{Key: key, Secret: signer.StaticSecret(secret)}
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		hs, err := s.Sign(r.Method, strings.TrimPrefix(r.URL.Path, emulator.DefaultBasePath), signer.BodyHash(nil), time.Now())
		if err != nil {
			return nil, err
		}
		r = r.Clone(r.Context())
		hs.Apply(r.Header)
		return http.DefaultTransport.RoundTrip(r)
	})}
	return &guard.HTTPPrices{Client: client, Base: base}, emu
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestHTTPPricesAtTheEmulatorsPrices(t *testing.T) {
	prices, emu := emulatorPrices(t)
	ctx := context.Background()
	for _, tt := range []struct {
		product, cycle string
		want           int64
	}{{"42", "monthly", 999}, {"42", "annually", 10788}, {"108", "quarterly", 23700}, {"7", "monthly", 249}} {
		got, err := prices.Price(ctx, tt.product, tt.cycle)
		if err != nil || got != (guard.Money{Cents: tt.want, Currency: "EUR"}) {
			t.Errorf("Price(%s, %s) = %v, %v; want %d EUR", tt.product, tt.cycle, got, err, tt.want)
		}
	}
	for _, tt := range []struct{ product, cycle string }{{"999", "monthly"}, {"42", "weekly"}} {
		if _, err := prices.Price(ctx, tt.product, tt.cycle); !errors.Is(err, guard.ErrNoPrice) {
			t.Errorf("Price(%s, %s): %v, want ErrNoPrice", tt.product, tt.cycle, err)
		}
	}
	if _, err := prices.Price(ctx, "999", "monthly"); !errors.Is(err, guard.ErrNoPrice) {
		t.Errorf("Price(999) again: %v", err)
	}
	if n := emu.Requests()["GET /v1/products/{id}"]; n != 5 {
		t.Errorf("%d lookups reached the API, want 5: 42, 108, 7 once each (cached), 999 twice (not cached)", n)
	}
}

// BenchmarkGuardOrder measures what the guard adds to one order: Admit (the
// order's body read, its price from the cache, a reservation in the
// in-process store) and Record (the answer's amount settled, the usage
// read for the metrics). Prices come from the emulator, asked once before
// the timer starts. The clock moves 36 s per order, so that the hour's
// periods hold 100 orders, as a limit like 100/1h would.
func BenchmarkGuardOrder(b *testing.B) {
	prices, _ := emulatorPrices(b)
	now := time.Now()
	g, err := guard.New(guard.Options{Orders: 1000, OrderPer: time.Hour, Spend: guard.Money{Cents: 1 << 50, Currency: "EUR"},
		SpendPer: time.Hour, KeyWindow: 10 * time.Minute, Prices: prices, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	body := []byte(testutil.OrderBody)
	answer := []byte(`{"id":1001,"status":"paid","product_id":42,"billing_cycle":"monthly","amount":"9.99","currency":"EUR"}`)
	if _, err := prices.Price(ctx, "42", "monthly"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		now = now.Add(36 * time.Second)
		c := proxy.NewCall("POST", "/v1/orders", body, "key-"+strconv.Itoa(i), proxy.KeyAuto, now)
		if err := g.Admit(ctx, c); err != nil {
			b.Fatal(err)
		}
		g.Record(c, &proxy.Outcome{Status: 201, Sent: true, UpstreamStatus: 201, Answer: answer, Complete: true})
	}
}

// TestRecordCountsWhatTheAnswerSays prices an order at 9.99, then tells the
// guard how it was answered, and checks what the next order may spend.
func TestRecordCountsWhatTheAnswerSays(t *testing.T) {
	prices, _ := emulatorPrices(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		outcome proxy.Outcome
		spent   int64 // counted for the first order afterwards
	}{
		{"201 at the list price", proxy.Outcome{Status: 201, Sent: true, UpstreamStatus: 201, Answer: []byte(`{"amount":"9.99","currency":"EUR"}`)}, 999},
		{"201 with options costing more", proxy.Outcome{Status: 201, Sent: true, UpstreamStatus: 201, Answer: []byte(`{"amount":"12.345","currency":"EUR"}`)}, 1235},
		{"201 without a readable amount", proxy.Outcome{Status: 201, Sent: true, UpstreamStatus: 201, Answer: []byte(`{"amount":12.34}`)}, 999},
		{"201 in another currency", proxy.Outcome{Status: 201, Sent: true, UpstreamStatus: 201, Answer: []byte(`{"amount":"1.00","currency":"USD"}`)}, 999},
		{"402 from the API", proxy.Outcome{Status: 402, Sent: true, UpstreamStatus: 402}, 0},
		{"never sent", proxy.Outcome{Status: 429, Kind: proxy.KindRateLimited}, 0},
		{"no answer: in doubt", proxy.Outcome{Status: 504, Sent: true, Kind: proxy.KindTimeout}, 999},
		{"API 500: in doubt", proxy.Outcome{Status: 500, Sent: true, UpstreamStatus: 500}, 999},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := guard.NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			g, err := guard.New(guard.Options{Spend: guard.Money{Cents: 2000, Currency: "EUR"}, SpendPer: time.Hour, Prices: prices, Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			first := proxy.NewCall("POST", "/v1/orders", []byte(testutil.OrderBody), "first", proxy.KeyClient, time.Now())
			if err := g.Admit(ctx, first); err != nil {
				t.Fatal(err)
			}
			g.Record(first, &tt.outcome)
			if got := gauge(t, reg, "khproxy_guard_period_spend"); got != float64(tt.spent)/100 {
				t.Errorf("spend counted: %v, want %s", got, guard.FormatCents(tt.spent))
			}
			// The first again is a retry, admitted whatever is spent, unless
			// it was forgotten.
			retry := proxy.NewCall("POST", "/v1/orders", []byte(testutil.OrderBody), "first", proxy.KeyClient, time.Now())
			if err := g.Admit(ctx, retry); err != nil {
				t.Errorf("retry of the first: %v, want admitted", err)
			}
		})
	}
}

// gauge returns the value of the one series of the gauge name in reg.
func gauge(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series of %s", name)
	return 0
}

// priceFunc is a PriceSource.
type priceFunc func(ctx context.Context, product, cycle string) (guard.Money, error)

func (f priceFunc) Price(ctx context.Context, product, cycle string) (guard.Money, error) {
	return f(ctx, product, cycle)
}

// TestRetryPassesWhenThePriceIsGone: a retry of a counted order is let
// through when its product can no longer be priced; a new order is not.
func TestRetryPassesWhenThePriceIsGone(t *testing.T) {
	var gone error
	prices := priceFunc(func(context.Context, string, string) (guard.Money, error) {
		if gone != nil {
			return guard.Money{}, gone
		}
		return guard.Money{Cents: 999, Currency: "EUR"}, nil
	})
	g, err := guard.New(guard.Options{Spend: guard.Money{Cents: 5000, Currency: "EUR"}, SpendPer: time.Hour, Prices: prices})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	newCall := func(key string) *proxy.Call {
		return proxy.NewCall("POST", "/v1/orders", []byte(testutil.OrderBody), key, proxy.KeyClient, time.Now())
	}
	first := newCall("first")
	if err := g.Admit(ctx, first); err != nil {
		t.Fatal(err)
	}
	g.Record(first, &proxy.Outcome{Status: 201, Sent: true, UpstreamStatus: 201, Answer: []byte(`{"amount":"9.99","currency":"EUR"}`)})
	for _, tt := range []struct {
		name string
		err  error
		kind proxy.Kind
	}{
		{"product gone", fmt.Errorf("product 42: %w", guard.ErrNoPrice), proxy.KindSpendLimit},
		{"lookup failing", errors.New("connection refused"), proxy.KindGuardUnavailable},
	} {
		gone = tt.err
		if err := g.Admit(ctx, newCall("first")); err != nil {
			t.Errorf("%s: retry of the counted order: %v, want admitted", tt.name, err)
		}
		var e *proxy.Error
		if err := g.Admit(ctx, newCall("second")); !errors.As(err, &e) || e.Kind != tt.kind {
			t.Errorf("%s: a new order: %v, want %s", tt.name, err, tt.kind)
		}
	}
}
