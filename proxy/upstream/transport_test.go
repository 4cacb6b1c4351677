package upstream_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/proxy/heldbody"
	"khproxy/proxy/upstream"
	"khproxy/ratelimit"
	"khproxy/signer"
)

const (
	testKey    = "test-key"
	testSecret = "test-secret"
)

// recMetrics records what the Transport measures.
type recMetrics struct {
	mu      sync.Mutex
	reasons []string
	offsets []time.Duration
	answers []string // "status reason" per finished attempt
	rereads []string
}

func (m *recMetrics) UpstreamAttemptDone(status int, reason string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d < 0 {
		reason += " negative duration"
	}
	m.answers = append(m.answers, strings.TrimSpace(strconv.Itoa(status)+" "+reason))
}

func (m *recMetrics) SecretReread(result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rereads = append(m.rereads, result)
}

func (m *recMetrics) UpstreamAttempt(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reasons = append(m.reasons, reason)
}

func (m *recMetrics) ClockOffset(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.offsets = append(m.offsets, d)
}

// seen is what the upstream got: one entry per request.
type seen struct {
	idemKey   string
	timestamp string
	err       error // from the signature check
}

// upstreamServer answers the n-th request (0-based) with answers[n], the
// last one from then on, after checking its signature over body.
func upstreamServer(t testing.TB, body []byte, answers ...func(w http.ResponseWriter)) (*httptest.Server, func() []seen) {
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s := seen{idemKey: r.Header.Get("Idempotency-Key"), timestamp: r.Header.Get("KH-Timestamp"),
			err: testutil.VerifySignature(r.Header, testKey, testSecret, r.Method, r.URL.RequestURI(), b)}
		if s.err == nil && !bytes.Equal(b, body) {
			s.err = errors.New("body differs")
		}
		mu.Lock()
		n := len(got)
		got = append(got, s)
		mu.Unlock()
		answers[min(n, len(answers)-1)](w)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

func answer(status int, header map[string]string, body string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// newCall returns a Call for target with body held in memory.
func newCall(t testing.TB, target, key string, body []byte) *upstream.Call {
	h := heldbody.New(heldbody.NewBudget(1 << 20))
	if err := h.ReadKnown(context.Background(), bytes.NewReader(body), int64(len(body)), time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Drop)
	return &upstream.Call{Target: target, BodyHash: h.Hash(), Body: h, IdempotencyKey: key}
}

// send makes one RoundTrip of method to srv's target with c in its context.
func send(t testing.TB, tr http.RoundTripper, method, url string, c *upstream.Call) (*http.Response, error) {
	req, err := http.NewRequestWithContext(upstream.WithCall(context.Background(), c), method, url+c.Target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr.RoundTrip(req)
}

func newTransport(t testing.TB, o upstream.Options) *upstream.Transport {
	if o.Signer == nil {
		o.Signer = &signer.Signer{Key: testKey, Secret: signer.StaticSecret(testSecret)}
	}
	tr, err := upstream.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestRoundTripRetries runs the retry rules through real sockets: every
// attempt is signed afresh over the same body, carries the key, and the
// metrics hear why each one was made.
func TestRoundTripRetries(t *testing.T) {
	// A clock just before a whole second, so that a Retry-After date at
	// that second asks for a millisecond.
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now.Add(-time.Millisecond) }
	ok := answer(200, nil, "ok")
	tests := []struct {
		name         string
		method, key  string
		retryMax     int
		answers      []func(http.ResponseWriter)
		wantStatus   int
		wantAttempts int
		wantReasons  []string
	}{
		{"GET 503 then ok", "GET", "", 1, []func(http.ResponseWriter){answer(503, nil, ""), ok}, 200, 2, []string{"first", "unavailable"}},
		{"keyless POST 503 passes through", "POST", "", 1, []func(http.ResponseWriter){answer(503, nil, ""), ok}, 503, 1, []string{"first"}},
		{"POST with key 502 then ok", "POST", "k1", 1, []func(http.ResponseWriter){answer(502, nil, ""), ok}, 200, 2, []string{"first", "unavailable"}},
		{"503 beyond RetryMax passes through", "GET", "", 1, []func(http.ResponseWriter){answer(503, nil, "")}, 503, 2, []string{"first", "unavailable"}},
		{"429 with Retry-After date", "GET", "", 1, []func(http.ResponseWriter){answer(429, map[string]string{"Retry-After": now.Format(http.TimeFormat)}, ""), ok}, 200, 2, []string{"first", "rate_limited"}},
		{"429 beyond the budget passes through", "GET", "", 1, []func(http.ResponseWriter){answer(429, map[string]string{"Retry-After": "3600"}, "")}, 429, 1, []string{"first"}},
		{"replay_detected once without RetryMax", "POST", "", 0, []func(http.ResponseWriter){answer(401, nil, `{"reason":"replay_detected"}`), ok}, 200, 2, []string{"first", "replay_detected"}},
		{"replay_detected only once", "GET", "", 0, []func(http.ResponseWriter){answer(401, nil, `{"reason":"replay_detected"}`)}, 401, 2, []string{"first", "replay_detected"}},
		{"other 401 passes through", "GET", "", 1, []func(http.ResponseWriter){answer(401, nil, `{"reason":"invalid_signature"}`)}, 401, 1, []string{"first"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(`{"product":"vps-s"}`)
			srv, got := upstreamServer(t, body, tt.answers...)
			m := &recMetrics{}
			tr := newTransport(t, upstream.Options{RetryMax: tt.retryMax, RetryBudget: 10 * time.Second, Metrics: m, Now: clock})
			c := newCall(t, "/v1/orders?x=1", tt.key, body)
			resp, err := send(t, tr, tt.method, srv.URL, c)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if c.Attempts != tt.wantAttempts || !c.Sent.Load() {
				t.Errorf("Call reports %d attempts, sent %v; want %d, sent", c.Attempts, c.Sent.Load(), tt.wantAttempts)
			}
			if !slices.Equal(m.reasons, tt.wantReasons) {
				t.Errorf("attempt reasons %q, want %q", m.reasons, tt.wantReasons)
			}
			reqs := got()
			if len(reqs) != tt.wantAttempts {
				t.Errorf("the upstream got %d requests, want %d", len(reqs), tt.wantAttempts)
			}
			for i, s := range reqs {
				if s.err != nil || s.idemKey != tt.key {
					t.Errorf("request %d: signature check %v, Idempotency-Key %q; want a valid signature and key %q", i, s.err, s.idemKey, tt.key)
				}
			}
		})
	}
}

// TestRoundTripClockSkew: a 401 timestamp_out_of_window with a Date header
// is retried once, signed with the upstream's clock, which the metrics
// hear of; later requests keep the correction.
func TestRoundTripClockSkew(t *testing.T) {
	ours := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	theirs := ours.Add(-10 * time.Minute)
	skewed := answer(401, map[string]string{"Date": theirs.Format(http.TimeFormat)}, `{"reason":"timestamp_out_of_window"}`)
	srv, got := upstreamServer(t, nil, skewed, answer(200, nil, "ok"))
	m := &recMetrics{}
	tr := newTransport(t, upstream.Options{Metrics: m, Now: func() time.Time { return ours }})
	for range 2 {
		resp, err := send(t, tr, "GET", srv.URL, newCall(t, "/v1/products", "", nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
	}
	want := []string{signer.Timestamp(ours), signer.Timestamp(theirs), signer.Timestamp(theirs)}
	var stamps []string
	for _, s := range got() {
		stamps = append(stamps, s.timestamp)
	}
	if !slices.Equal(stamps, want) {
		t.Errorf("KH-Timestamp of the attempts %q, want %q", stamps, want)
	}
	if !slices.Equal(m.offsets, []time.Duration{-10 * time.Minute}) || !slices.Equal(m.reasons, []string{"first", "timestamp_out_of_window", "first"}) {
		t.Errorf("metrics heard offsets %v, reasons %q", m.offsets, m.reasons)
	}
}

// TestRoundTripFailures: the Transport's own failures and the network's,
// and what the Call reports of them.
func TestRoundTripFailures(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // connection refused from now on
	stall := make(chan struct{})
	defer close(stall)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	ok, _ := upstreamServer(t, nil, answer(200, nil, "ok"))
	oneToken := func(t *testing.T) *ratelimit.Limiter {
		l, err := ratelimit.New(ratelimit.Options{Limit: ratelimit.Limit{Every: time.Minute, Burst: 1}})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	tests := []struct {
		name         string
		url          string
		opts         func(t *testing.T) upstream.Options
		requests     int // the last one's result is judged
		check        func(error) bool
		wantAttempts int
		wantSent     bool
	}{
		{"connection refused, retried", closed.URL, func(*testing.T) upstream.Options {
			return upstream.Options{RetryMax: 1}
		}, 1, func(err error) bool { return err != nil }, 2, true},
		{"no headers in time", slow.URL, func(*testing.T) upstream.Options {
			return upstream.Options{Timeout: 20 * time.Millisecond}
		}, 1, func(err error) bool { return errors.Is(err, upstream.ErrAttemptTimeout) }, 1, true},
		{"signing fails, not retried", ok.URL, func(*testing.T) upstream.Options {
			return upstream.Options{RetryMax: 3, Signer: &signer.Signer{Key: testKey, Secret: signer.StaticSecret("")}}
		}, 1, func(err error) bool { var se *upstream.SignError; return errors.As(err, &se) }, 1, false},
		{"no rate-limit token", ok.URL, func(t *testing.T) upstream.Options {
			return upstream.Options{Limiter: oneToken(t)}
		}, 2, func(err error) bool {
			var re *upstream.RateLimitError
			return errors.As(err, &re) && re.RetryAfter > 0
		}, 0, false},
		{"stopped in line for a token", ok.URL, func(t *testing.T) upstream.Options {
			l, err := ratelimit.New(ratelimit.Options{Limit: ratelimit.Limit{Every: time.Minute, Burst: 1}, MaxWait: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			stop, cancel := context.WithCancel(context.Background())
			time.AfterFunc(10*time.Millisecond, cancel)
			return upstream.Options{Limiter: l, Stop: stop}
		}, 2, func(err error) bool { var se *upstream.StopError; return errors.As(err, &se) }, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTransport(t, tt.opts(t))
			var c *upstream.Call
			var err error
			for range tt.requests {
				c = newCall(t, "/v1/products", "", nil)
				var resp *http.Response
				resp, err = send(t, tr, "GET", tt.url, c)
				if resp != nil {
					resp.Body.Close()
				}
			}
			if !tt.check(err) {
				t.Errorf("error %v (%T) is not the one expected", err, err)
			}
			if c.Attempts != tt.wantAttempts || c.Sent.Load() != tt.wantSent {
				t.Errorf("Call reports %d attempts, sent %v; want %d, %v", c.Attempts, c.Sent.Load(), tt.wantAttempts, tt.wantSent)
			}
		})
	}
}

func TestRoundTripWithoutCall(t *testing.T) {
	tr := newTransport(t, upstream.Options{})
	req := httptest.NewRequest("GET", "http://upstream.invalid/v1/products", nil)
	if resp, err := tr.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatal("a request without a Call was sent")
	}
}

func TestNewWithoutSigner(t *testing.T) {
	if _, err := upstream.New(upstream.Options{}); err == nil {
		t.Fatal("New without a Signer succeeded")
	}
}

// TestResponseBodyIdle: a response body that sends nothing for the idle
// timeout is cut with ErrBodyIdle, which the Call keeps.
func TestResponseBodyIdle(t *testing.T) {
	stall := make(chan struct{})
	defer close(stall)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	tr := newTransport(t, upstream.Options{IdleTimeout: 20 * time.Millisecond})
	c := newCall(t, "/v1/products", "", nil)
	resp, err := send(t, tr, "GET", srv.URL, c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "partial" || !errors.Is(err, upstream.ErrBodyIdle) {
		t.Errorf("read %q, %v; want the partial body, then ErrBodyIdle", b, err)
	}
	if c.BodyErr != upstream.ErrBodyIdle {
		t.Errorf("Call.BodyErr = %v, want ErrBodyIdle", c.BodyErr)
	}
}

// TestRootsWith: no extra CAs keeps the system's roots (nil).
func TestRootsWith(t *testing.T) {
	if got := upstream.RootsWith(nil); got != nil {
		t.Errorf("RootsWith(nil) = %v, want nil", got)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	tr := upstream.NewHTTPTransport()
	defer tr.CloseIdleConnections()
	tr.TLSClientConfig.RootCAs = upstream.RootsWith([]*x509.Certificate{srv.Certificate()})
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatalf("the upstream's CA is not trusted: %v", err)
	}
	resp.Body.Close()
}
