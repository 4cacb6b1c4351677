package webhooksend_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/emulator/webhooksend"
	"khproxy/internal/testutil"
)

func TestSignature(t *testing.T) {
	// Vectors from openssl, independent of this package:
	//   printf '%s' '<t>.<body>' | openssl dgst -sha256 -hmac '<secret>'
	tests := []struct {
		name, secret string
		t            int64
		body         string
		want         string
	}{
		{"event", "whsec_test", 1700000000, `{"id":"evt_1","type":"order.paid"}`,
			"t=1700000000,v1=bd9a92a5aa31ee1da5b8176d76564bb487997bd83d82812500375b2ee9c46503"},
		{"empty body, zero time", "k", 0, "",
			"t=0,v1=6b4a4b8b3c40f1e8f53a3d36682e5f99f7ad2ac1df1c93dfe336f329167641e7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := webhooksend.Signature(tc.secret, tc.t, []byte(tc.body)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseRetries(t *testing.T) {
	good := []struct {
		in   string
		want []time.Duration
	}{
		{"production", webhooksend.ProductionRetries()},
		{" fast ", webhooksend.FastRetries()},
		{"none", []time.Duration{}},
		{"1s, 10s,1m", []time.Duration{time.Second, 10 * time.Second, time.Minute}},
		{"0s", []time.Duration{0}},
	}
	for _, tc := range good {
		t.Run(tc.in, func(t *testing.T) {
			got, err := webhooksend.ParseRetries(tc.in)
			if err != nil || got == nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	tooMany := strings.Repeat("1s,", 20) + "1s"
	for _, bad := range []string{"", "soon", "1s,-1s", "1s,,2s", "1", tooMany} {
		t.Run("bad "+bad, func(t *testing.T) {
			if got, err := webhooksend.ParseRetries(bad); err == nil {
				t.Errorf("got %v, want an error", got)
			}
		})
	}
}

func TestSchedulesGrowAndAreValid(t *testing.T) {
	for name, s := range map[string][]time.Duration{"production": webhooksend.ProductionRetries(), "fast": webhooksend.FastRetries()} {
		if err := webhooksend.ValidateRetries(s); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		for i := 1; i < len(s); i++ {
			if s[i] <= s[i-1] {
				t.Errorf("%s schedule does not grow: %v", name, s)
			}
		}
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	ok := webhooksend.Options{Secret: "s", Header: "KH-Webhook-Signature"}
	tests := []struct {
		name   string
		mutate func(*webhooksend.Options)
	}{
		{"no secret", func(o *webhooksend.Options) { o.Secret = "" }},
		{"no header", func(o *webhooksend.Options) { o.Header = "" }},
		{"header with space", func(o *webhooksend.Options) { o.Header = "Bad Header" }},
		{"negative retry", func(o *webhooksend.Options) { o.Retries = []time.Duration{time.Second, -1} }},
		{"too many retries", func(o *webhooksend.Options) { o.Retries = make([]time.Duration, 21) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mutate(&o)
			if s, err := webhooksend.New(o); err == nil {
				s.Close()
				t.Error("New accepted the options")
			}
		})
	}
}

// fakeLookup resolves a few names without DNS.
func fakeLookup(_ context.Context, host string) ([]string, error) {
	switch host {
	case "public.example":
		return []string{"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"}, nil
	case "internal.example":
		return []string{"93.184.215.14", "10.1.2.3"}, nil
	case "v6loop.example":
		return []string{"::1"}, nil
	case "empty.example":
		return nil, nil
	case "garbage.example":
		return []string{"not-an-ip"}, nil
	}
	return nil, errors.New("no such host")
}

func newSender(t testing.TB, o webhooksend.Options) *webhooksend.Sender {
	t.Helper()
	if o.Secret == "" {
		o.Secret = "whsec_test"
	}
	if o.Header == "" {
		o.Header = "KH-Webhook-Signature"
	}
	s, err := webhooksend.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestVet(t *testing.T) {
	const private = "host must not be a loopback, private or link-local address"
	tests := []struct {
		url      string
		insecure bool
		want     string // "" accepted
	}{
		{"https://public.example/hook", false, ""},
		{"https://93.184.215.14/hook", false, ""},
		{"https://[2606:4700::1111]/hook", false, ""},
		{"HTTPS://public.example/", false, ""},
		{"http://public.example/hook", false, "must use https"},
		{"https://user:pw@public.example/", false, "must not contain user info"},
		{"ftp://public.example/", false, "must use https"},
		{"/relative", false, "must be an absolute URL"},
		{"https:///nohost", false, "must be an absolute URL"},
		{"https://public.example/" + strings.Repeat("a", 2048), false, "must be at most 2048 characters"},
		{"https://10.0.0.1/", false, private},
		{"https://172.16.5.4/", false, private},
		{"https://192.168.1.10/", false, private},
		{"https://100.64.0.1/", false, private},
		{"https://127.0.0.1:8443/", false, private},
		{"https://0.0.0.0/", false, private},
		{"https://169.254.169.254/latest", false, private},
		{"https://224.0.0.1/", false, private},
		{"https://198.51.100.7/", false, private},
		{"https://[::1]/", false, private},
		{"https://[::]/", false, private},
		{"https://[fe80::1]/", false, private},
		{"https://[fc00::1]/", false, private},
		{"https://[::ffff:127.0.0.1]/", false, private},
		{"https://[::ffff:10.0.0.1]/", false, private},
		{"https://[64:ff9b::a00:1]/", false, private},
		{"https://[2002:7f00:1::]/", false, private},
		{"https://[2001::1]/", false, private},
		{"https://[fec0::1]/", false, private},
		{"https://[2001:db8::1]/", false, private},
		{"https://localhost/", false, private},
		{"https://api.localhost./", false, private},
		{"https://internal.example/", false, "host resolves to a non-public address"},
		{"https://v6loop.example/", false, "host resolves to a non-public address"},
		{"https://garbage.example/", false, "host resolves to a non-public address"},
		{"https://nowhere.example/", false, "host does not resolve"},
		{"https://empty.example/", false, "host does not resolve"},
		{"http://127.0.0.1:8080/hook", true, ""},
		{"https://[::1]/", true, ""},
		{"http://localhost/", true, ""},
		{"ftp://127.0.0.1/", true, "must use https (or http with insecure webhooks allowed)"},
		{"relative", true, "must be an absolute URL"},
	}
	secure := newSender(t, webhooksend.Options{Lookup: fakeLookup})
	insecure := newSender(t, webhooksend.Options{Lookup: fakeLookup, Insecure: true})
	for _, tc := range tests {
		name := tc.url
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			s := secure
			if tc.insecure {
				s = insecure
			}
			if got := s.Vet(context.Background(), tc.url); got != tc.want {
				t.Errorf("Vet = %q, want %q", got, tc.want)
			}
		})
	}
}

type received struct {
	header http.Header
	body   string
}

// receiver answers each request with the next status of statuses (200
// once they run out) and reports what it got.
func receiver(t testing.TB, statuses ...int) (*httptest.Server, <-chan received) {
	t.Helper()
	ch := make(chan received, 16)
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		status := http.StatusOK
		if len(statuses) > 0 {
			status, statuses = statuses[0], statuses[1:]
		}
		mu.Unlock()
		ch <- received{r.Header.Clone(), string(body)}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func next(t testing.TB, ch <-chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery arrived")
		return received{}
	}
}

// TestSendSignsRetriesAndRecords: a delivery carries the headers and a
// signature of the Now clock, is retried after a failure, and is recorded
// once; Redeliver sends it again marked as a duplicate.
func TestSendSignsRetriesAndRecords(t *testing.T) {
	srv, ch := receiver(t, http.StatusServiceUnavailable)
	at := time.Unix(1700000000, 0)
	s := newSender(t, webhooksend.Options{Insecure: true, Retries: []time.Duration{time.Millisecond},
		Headers: http.Header{"x-kh-emulator": {"1"}}, Now: func() time.Time { return at }})
	ev := webhooksend.Event{ID: "evt_1", Type: "order.paid", Body: []byte(`{"id":"evt_1","type":"order.paid"}`)}
	s.Send(srv.URL+"/hook", ev, false)
	for attempt := 1; attempt <= 2; attempt++ {
		r := next(t, ch)
		want := map[string]string{"Content-Type": "application/json", "User-Agent": "KernelHost-Webhooks/1.0 (khproxy emulator)",
			"X-Kh-Emulator": "1", "Kh-Webhook-Signature": webhooksend.Signature("whsec_test", at.Unix(), ev.Body)}
		for k, v := range want {
			if got := r.header.Get(k); got != v {
				t.Errorf("attempt %d: %s: got %q, want %q", attempt, k, got, v)
			}
		}
		if r.body != string(ev.Body) {
			t.Errorf("attempt %d: body %q", attempt, r.body)
		}
	}
	testutil.WaitFor(t, "the delivery record", func() bool { return len(s.Deliveries()) == 1 })
	d := s.Deliveries()[0]
	if d.EventID != "evt_1" || d.Type != "order.paid" || d.URL != srv.URL+"/hook" || d.Attempts != 2 ||
		d.StatusCode != 200 || !d.Delivered || d.Error != "" || d.Duplicate {
		t.Errorf("record: %+v", d)
	}
	if n := s.Pending(); n != 0 {
		t.Errorf("Pending = %d, want 0", n)
	}

	if n, err := s.Redeliver("evt_1"); n != 1 || err != nil {
		t.Fatalf("Redeliver = %d, %v", n, err)
	}
	next(t, ch)
	testutil.WaitFor(t, "the redelivery record", func() bool { return len(s.Deliveries()) == 2 })
	if d := s.Deliveries()[1]; !d.Duplicate || !d.Delivered || d.Attempts != 1 {
		t.Errorf("redelivery record: %+v", d)
	}
	if _, err := s.Redeliver("evt_NOPE"); !errors.Is(err, webhooksend.ErrUnknownEvent) {
		t.Errorf("Redeliver(unknown) = %v, want ErrUnknownEvent", err)
	}
}

// TestGiveUpResetAndClose: a delivery that keeps failing is recorded with
// the last error after its retries; Reset forgets the log; after Close a
// Send is recorded as failed.
func TestGiveUpResetAndClose(t *testing.T) {
	srv, ch := receiver(t, 500, 500, 500)
	s := newSender(t, webhooksend.Options{Insecure: true, Retries: []time.Duration{time.Millisecond, time.Millisecond}})
	s.Send(srv.URL, webhooksend.Event{ID: "evt_2", Type: "t", Body: []byte("{}")}, false)
	for range 3 {
		next(t, ch)
	}
	testutil.WaitFor(t, "the given-up record", func() bool { return len(s.Deliveries()) == 1 })
	if d := s.Deliveries()[0]; d.Delivered || d.Attempts != 3 || d.StatusCode != 500 || d.Error != "receiver answered 500" {
		t.Errorf("record: %+v", d)
	}
	s.Reset()
	if n := len(s.Deliveries()); n != 0 {
		t.Errorf("%d records after Reset, want 0", n)
	}
	s.Close()
	s.Send(srv.URL, webhooksend.Event{ID: "evt_3", Type: "t", Body: []byte("{}")}, true)
	if ds := s.Deliveries(); len(ds) != 1 || ds[0].Error != "emulator closed" || ds[0].Attempts != 0 || !ds[0].Duplicate {
		t.Errorf("records after Close: %+v", ds)
	}
}

// TestDefaultClientDialsPublicOnly: without Insecure the default client
// refuses to connect to a loopback receiver (the URL is not vetted here,
// as when DNS changed after vetting), and the error names the host only.
func TestDefaultClientDialsPublicOnly(t *testing.T) {
	srv, ch := receiver(t)
	s := newSender(t, webhooksend.Options{Retries: []time.Duration{}})
	s.Send(srv.URL+"/hook?token=SECRET", webhooksend.Event{ID: "evt_4", Type: "t", Body: []byte("{}")}, false)
	testutil.WaitFor(t, "the failed record", func() bool { return len(s.Deliveries()) == 1 })
	d := s.Deliveries()[0]
	if d.Delivered || d.Attempts != 1 || !strings.Contains(d.Error, "refusing to connect to non-public address") ||
		strings.Contains(d.Error, "SECRET") {
		t.Errorf("record: %+v", d)
	}
	select {
	case r := <-ch:
		t.Errorf("the loopback receiver got a request: %+v", r)
	default:
	}
}
