package webhook_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/signer"
	"khproxy/webhook"
)

func TestReceiverForwardsVerified(t *testing.T) {
	r := newRig(t)
	r.app.set(func(a *testApp) { a.status, a.response = http.StatusAccepted, `{"ok":true}` })
	h := sigHeader(signed(sigCurrent))
	h.Set("X-Request-Id", "req-1")
	h.Set("X-Forwarded-For", "203.0.113.7")
	h.Set(webhook.VerifiedHeader, "false") // a sender cannot pre-verify
	resp, body := r.post(t, "/any/path?token=abc", h, vecBody)
	if resp.StatusCode != http.StatusAccepted || string(body) != `{"ok":true}` {
		t.Fatalf("answer: %d %s, want the app's 202", resp.StatusCode, body)
	}
	got := r.app.requests()
	if len(got) != 1 {
		t.Fatalf("app got %d requests, want 1", len(got))
	}
	g := got[0]
	if g.method != http.MethodPost || g.path != "/hooks/kh?src=khproxy" {
		t.Errorf("app got %s %s, want POST /hooks/kh?src=khproxy", g.method, g.path)
	}
	if string(g.body) != vecBody {
		t.Errorf("body: got %q, want the original bytes", g.body)
	}
	for name, want := range map[string]string{
		webhook.DefaultHeader:  signed(sigCurrent),
		webhook.VerifiedHeader: "true",
		"Content-Type":         "application/json",
		"X-Request-Id":         "req-1",
		"X-Forwarded-For":      "203.0.113.7",
	} {
		if vals := g.header.Values(name); len(vals) != 1 || vals[0] != want {
			t.Errorf("%s: got %q, want [%q]", name, vals, want)
		}
	}
	if r.outcomes.get(webhook.OutcomeForwarded) != 1 {
		t.Errorf("outcome forwarded not counted: %+v", r.outcomes.n)
	}
}

func TestReceiverPassesTheAppStatusBack(t *testing.T) {
	r := newRig(t)
	for _, tt := range []struct {
		status int
		want   webhook.Outcome
	}{
		{400, webhook.OutcomeAppError}, {404, webhook.OutcomeAppError},
		{500, webhook.OutcomeAppError}, {503, webhook.OutcomeAppError},
		{200, webhook.OutcomeForwarded}, {204, webhook.OutcomeForwarded},
	} {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			r.app.set(func(a *testApp) { a.status = tt.status })
			before := r.outcomes.get(tt.want)
			// Non-2xx answers are forgotten, so the same delivery is
			// forwarded each time; the 2xx ones are remembered.
			body, sig := vecBody, sigCurrent
			if tt.status == 204 {
				body, sig = vecBody2, sigCurrent2
			}
			resp, _ := r.post(t, "/", sigHeader(signed(sig)), body)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want the app's %d", resp.StatusCode, tt.status)
			}
			if got := r.outcomes.get(tt.want) - before; got != 1 {
				t.Errorf("outcome %s counted %d times, want 1", tt.want, got)
			}
		})
	}
	if got := len(r.app.requests()); got != 6 {
		t.Errorf("app got %d requests, want 6", got)
	}
}

func TestReceiverRejects(t *testing.T) {
	tampered := strings.Replace(vecBody, "1001", "1002", 1)
	tests := []struct {
		name   string
		header http.Header
		body   string
		mutate func(*webhook.Receiver)
		want   webhook.Outcome
	}{
		{"no header", http.Header{}, vecBody, nil, webhook.OutcomeNoSignature},
		{"empty header", sigHeader(""), vecBody, nil, webhook.OutcomeNoSignature},
		{"v1,t=1", sigHeader("v1,t=1"), vecBody, nil, webhook.OutcomeMalformed},
		{"t=", sigHeader("t="), vecBody, nil, webhook.OutcomeMalformed},
		{"v0 only", sigHeader("t=1750000000,v0=" + sigCurrent), vecBody, nil, webhook.OutcomeMalformed},
		{"two signature headers", http.Header{webhook.DefaultHeader: {signed(sigCurrent), signed(sigCurrent)}}, vecBody, nil, webhook.OutcomeMalformed},
		{"wrong secret", sigHeader(signed(sigPrevious)), vecBody, nil, webhook.OutcomeMismatch},
		{"tampered body", sigHeader(signed(sigCurrent)), tampered, nil, webhook.OutcomeMismatch},
		{"other header name configured", sigHeader(signed(sigCurrent)), vecBody,
			func(rc *webhook.Receiver) { rc.Header = "Stripe-Signature" }, webhook.OutcomeNoSignature},
		{"stale", sigHeader(signed(sigCurrent)), vecBody,
			func(rc *webhook.Receiver) { rc.Now = func() time.Time { return time.Unix(vecT+301, 0) } }, webhook.OutcomeStale},
		{"future", sigHeader(signed(sigCurrent)), vecBody,
			func(rc *webhook.Receiver) { rc.Now = func() time.Time { return time.Unix(vecT-301, 0) } }, webhook.OutcomeFuture},
		{"stale under a shorter tolerance", sigHeader(signed(sigCurrent)), vecBody,
			func(rc *webhook.Receiver) { rc.Tolerance = 10 * time.Second }, webhook.OutcomeStale},
		{"no usable secret", sigHeader(signed(sigCurrent)), vecBody,
			func(rc *webhook.Receiver) { rc.Secret = signer.StaticSecret(nil) }, webhook.OutcomeSecret},
		{"body over the limit", sigHeader(signed(sigCurrent)), vecBody,
			func(rc *webhook.Receiver) { rc.MaxBodyBytes = int64(len(vecBody) - 1) }, webhook.OutcomeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mutate []func(*webhook.Receiver)
			if tt.mutate != nil {
				mutate = append(mutate, tt.mutate)
			}
			r := newRig(t, mutate...)
			resp, body := r.post(t, "/", tt.header, tt.body)
			status := http.StatusBadRequest
			switch tt.want {
			case webhook.OutcomeTooLarge:
				status = http.StatusRequestEntityTooLarge
			case webhook.OutcomeSecret:
				status = http.StatusServiceUnavailable
			}
			wantProblem(t, resp, body, status, tt.want)
			if got := len(r.app.requests()); got != 0 {
				t.Errorf("a rejected delivery reached the app %d times", got)
			}
			if got := r.outcomes.get(tt.want); got != 1 {
				t.Errorf("outcome %s counted %d times, want 1", tt.want, got)
			}
			if !strings.Contains(r.logs.String(), `"outcome":"`+string(tt.want)+`"`) {
				t.Errorf("the rejection is not logged with its reason:\n%s", r.logs.String())
			}
		})
	}
}

func TestReceiverAccepts(t *testing.T) {
	tests := []struct {
		name, header, secret string
		hdrName              string
	}{
		{"non-hex v1 next to a valid one", signed("nothex", sigCurrent), secretCurrent, ""},
		{"two v1 during a rotation, receiver on the new secret", signed(sigPrevious, sigCurrent), secretCurrent, ""},
		{"two v1 during a rotation, receiver on the old secret", signed(sigPrevious, sigCurrent), secretPrevious, ""},
		{"Stripe-Signature configured", signed(sigCurrent), secretCurrent, "Stripe-Signature"},
		{"header name in another case", signed(sigCurrent), secretCurrent, "stripe-signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(rc *webhook.Receiver) {
				rc.Secret = signer.StaticSecret(tt.secret)
				rc.Header = tt.hdrName
			})
			name := tt.hdrName
			if name == "" {
				name = webhook.DefaultHeader
			}
			resp, body := r.post(t, "/", http.Header{http.CanonicalHeaderKey(name): {tt.header}}, vecBody)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := len(r.app.requests()); got != 1 {
				t.Errorf("app got %d requests, want 1", got)
			}
		})
	}
}

func TestReceiverMethodNotAllowed(t *testing.T) {
	r := newRig(t)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodHead} {
		t.Run(m, func(t *testing.T) {
			resp, body := r.do(t, m, "/", sigHeader(signed(sigCurrent)), nil, 0)
			if m == http.MethodHead { // no body to judge
				if resp.StatusCode != http.StatusMethodNotAllowed {
					t.Errorf("status = %d, want 405", resp.StatusCode)
				}
			} else {
				wantProblem(t, resp, body, http.StatusMethodNotAllowed, webhook.OutcomeMethod)
			}
			if got := resp.Header.Get("Allow"); got != http.MethodPost {
				t.Errorf("Allow = %q, want POST", got)
			}
		})
	}
	if got := len(r.app.requests()); got != 0 {
		t.Errorf("app got %d requests", got)
	}
}

func TestReceiverBodyLimit(t *testing.T) {
	big := bytes.Repeat([]byte("x"), webhook.DefaultMaxBodyBytes+1)
	for _, tt := range []struct {
		name   string
		length int64 // -1: chunked, no Content-Length
	}{
		{"Content-Length over the limit", int64(len(big))},
		{"chunked body over the limit", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			resp, body := r.do(t, http.MethodPost, "/", sigHeader(signed(sigCurrent)), bytes.NewReader(big), tt.length)
			wantProblem(t, resp, body, http.StatusRequestEntityTooLarge, webhook.OutcomeTooLarge)
			if got := len(r.app.requests()); got != 0 {
				t.Errorf("app got %d requests", got)
			}
		})
	}
	t.Run("an unsigned body over the limit is refused for its header", func(t *testing.T) {
		r := newRig(t)
		resp, body := r.do(t, http.MethodPost, "/", http.Header{}, bytes.NewReader(big), -1)
		wantProblem(t, resp, body, http.StatusBadRequest, webhook.OutcomeNoSignature)
	})
	t.Run("exactly at the limit is read and judged", func(t *testing.T) {
		r := newRig(t)
		at := big[:webhook.DefaultMaxBodyBytes]
		resp, body := r.do(t, http.MethodPost, "/", sigHeader(signed(sigCurrent)), bytes.NewReader(at), -1)
		wantProblem(t, resp, body, http.StatusBadRequest, webhook.OutcomeMismatch)
	})
}

func TestReceiverReplay(t *testing.T) {
	r := newRig(t)
	h := sigHeader(signed(sigCurrent))
	for i := range 3 {
		resp, body := r.post(t, "/", h, vecBody)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("delivery %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	// The same payload under a rearranged header is the same delivery.
	if resp, body := r.post(t, "/", sigHeader(signed("0000", sigCurrent)), vecBody); resp.StatusCode != http.StatusOK {
		t.Fatalf("rearranged: %d %s", resp.StatusCode, body)
	}
	if got := len(r.app.requests()); got != 1 {
		t.Errorf("app got %d requests, want 1", got)
	}
	if got := r.outcomes.get(webhook.OutcomeReplay); got != 3 {
		t.Errorf("replays counted: %d, want 3", got)
	}
	// A different event is not a replay.
	if resp, _ := r.post(t, "/", sigHeader(signed(sigCurrent2)), vecBody2); resp.StatusCode != http.StatusOK {
		t.Fatalf("second event: %d", resp.StatusCode)
	}
	if got := len(r.app.requests()); got != 2 {
		t.Errorf("app got %d requests, want 2", got)
	}
}

func TestReceiverReplayAfterAppFailure(t *testing.T) {
	r := newRig(t)
	r.app.set(func(a *testApp) { a.status = http.StatusInternalServerError })
	h := sigHeader(signed(sigCurrent))
	if resp, _ := r.post(t, "/", h, vecBody); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("first: %d, want the app's 500", resp.StatusCode)
	}
	r.app.set(func(a *testApp) { a.status = http.StatusOK })
	if resp, _ := r.post(t, "/", h, vecBody); resp.StatusCode != http.StatusOK {
		t.Fatalf("resend: %d, want 200", resp.StatusCode)
	}
	if resp, _ := r.post(t, "/", h, vecBody); resp.StatusCode != http.StatusOK {
		t.Fatalf("third: %d, want 200", resp.StatusCode)
	}
	if got := len(r.app.requests()); got != 2 {
		t.Errorf("app got %d requests, want 2 (the failed one and its resend)", got)
	}
	if got := r.outcomes.get(webhook.OutcomeReplay); got != 1 {
		t.Errorf("replays counted: %d, want 1", got)
	}
}

// TestReceiverConcurrentDuplicates sends identical deliveries while the
// first is still with the app: the app sees one.
func TestReceiverConcurrentDuplicates(t *testing.T) {
	r := newRig(t)
	hold, arrived := make(chan struct{}), make(chan struct{}, 8)
	r.app.set(func(a *testApp) { a.hold, a.arrived = hold, arrived })
	h := sigHeader(signed(sigCurrent))
	var wg sync.WaitGroup
	statuses := make([]int, 5)
	for i := range statuses {
		wg.Add(1)
		go func() { // no t.Fatal off the test goroutine
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, r.rcv.URL, strings.NewReader(vecBody))
			req.Header = h.Clone()
			if resp, err := r.rcv.Client().Do(req); err == nil {
				statuses[i] = resp.StatusCode
				resp.Body.Close()
			}
		}()
		if i == 0 {
			<-arrived // the first is with the app
		}
	}
	close(hold)
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("delivery %d: status %d", i, s)
		}
	}
	if got := len(r.app.requests()); got != 1 {
		t.Errorf("app got %d requests, want 1", got)
	}
}

func TestReceiverAppUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead, _ := url.Parse("http://" + ln.Addr().String() + "/hooks")
	ln.Close()
	r := newRig(t, func(rc *webhook.Receiver) { rc.Next = &webhook.Forwarder{URL: dead, Logger: rc.Logger} })
	for i := range 2 { // not remembered: the resend is tried again
		resp, body := r.post(t, "/", sigHeader(signed(sigCurrent)), vecBody)
		wantProblem(t, resp, body, http.StatusServiceUnavailable, webhook.OutcomeAppUnreachable)
		if got := r.outcomes.get(webhook.OutcomeAppUnreachable); got != i+1 {
			t.Errorf("unreachable counted %d times, want %d", got, i+1)
		}
	}
}

func TestReceiverAppTimeout(t *testing.T) {
	r := newRig(t)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	r.app.set(func(a *testApp) { a.hold = hold })
	u, _ := url.Parse(r.app.srv.URL)
	r2 := newRig(t, func(rc *webhook.Receiver) {
		rc.Next = &webhook.Forwarder{URL: u, Timeout: 50 * time.Millisecond, Logger: rc.Logger}
	})
	resp, body := r2.post(t, "/", sigHeader(signed(sigCurrent)), vecBody)
	wantProblem(t, resp, body, http.StatusGatewayTimeout, webhook.OutcomeAppTimeout)
}

// TestReceiverSecretFileRotation rotates the webhook secret file the way
// Kubernetes does (a new file renamed over the old) and waits for the
// receiver to take the new secret, without a restart.
func TestReceiverSecretFileRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(path, []byte(secretPrevious+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, err := signer.NewFileSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(rc *webhook.Receiver) { rc.Secret = fs })
	resp, body := r.post(t, "/", sigHeader(signed(sigCurrent)), vecBody)
	wantProblem(t, resp, body, http.StatusBadRequest, webhook.OutcomeMismatch)

	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(secretCurrent+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the rotated secret", func() bool {
		resp, _ := r.post(t, "/", sigHeader(signed(sigCurrent)), vecBody)
		return resp.StatusCode == http.StatusOK
	})
	resp, body = r.post(t, "/", sigHeader(signed(sigPrevious)), vecBody)
	wantProblem(t, resp, body, http.StatusBadRequest, webhook.OutcomeMismatch)
	if got := len(r.app.requests()); got != 1 {
		t.Errorf("app got %d requests, want 1", got)
	}
}

// TestReceiverMisconfigured: a Receiver without Secret or Next answers 503
// instead of panicking.
func TestReceiverMisconfigured(t *testing.T) {
	for name, m := range map[string]func(*webhook.Receiver){
		"no secret": func(rc *webhook.Receiver) { rc.Secret = nil },
		"no next":   func(rc *webhook.Receiver) { rc.Next = nil },
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, m)
			resp, body := r.post(t, "/", sigHeader(signed(sigCurrent)), vecBody)
			wantProblem(t, resp, body, http.StatusServiceUnavailable, webhook.OutcomeSecret)
		})
	}
}

// TestReceiverAbortedAnswer: when the app's answer breaks off, the sender's
// connection is aborted too (it must not take a truncated answer as the
// app's), and the delivery is not remembered: its resend reaches the app.
func TestReceiverAbortedAnswer(t *testing.T) {
	var calls atomic.Int32
	broken := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) > 1 {
			return // 200
		}
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "short")
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = broken.Serve(ln) }()
	t.Cleanup(func() { broken.Close() })
	u, _ := url.Parse("http://" + ln.Addr().String())
	r := newRig(t, func(rc *webhook.Receiver) { rc.Next = &webhook.Forwarder{URL: u, Logger: rc.Logger} })
	req, _ := http.NewRequest(http.MethodPost, r.rcv.URL, strings.NewReader(vecBody))
	req.Header = sigHeader(signed(sigCurrent))
	resp, err := r.rcv.Client().Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("the sender got a complete answer from a broken app")
	}
	testutil.WaitFor(t, "the outcome", func() bool { return r.outcomes.get(webhook.OutcomeAppError) == 1 })
	if resp, body := r.post(t, "/", sigHeader(signed(sigCurrent)), vecBody); resp.StatusCode != http.StatusOK {
		t.Fatalf("resend: %d %s", resp.StatusCode, body)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("app called %d times, want 2", got)
	}
}
