package webhook_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/signer"
	"khproxy/webhook"
)

// received is one request as the test app saw it.
type received struct {
	method, path string
	header       http.Header
	body         []byte
}

// testApp is the app behind the receiver: it records every request and
// answers with status (200 unless set), after hold is closed when not nil.
type testApp struct {
	srv *httptest.Server

	mu       sync.Mutex
	got      []received
	status   int
	hold     chan struct{}
	arrived  chan struct{} // gets a value per request, if not nil
	response string
}

func newTestApp(t testing.TB) *testApp {
	t.Helper()
	a := &testApp{status: http.StatusOK}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.got = append(a.got, received{r.Method, r.URL.RequestURI(), r.Header.Clone(), body})
		status, hold, arrived, response := a.status, a.hold, a.arrived, a.response
		a.mu.Unlock()
		if arrived != nil {
			arrived <- struct{}{}
		}
		if hold != nil {
			<-hold
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, response)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *testApp) set(f func(a *testApp)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *testApp) requests() []received {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]received(nil), a.got...)
}

// outcomes counts Receiver.OnOutcome calls.
type outcomes struct {
	mu sync.Mutex
	n  map[webhook.Outcome]int
}

func (o *outcomes) add(x webhook.Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[x]++
}

func (o *outcomes) get(x webhook.Outcome) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[x]
}

// rig is a Receiver in front of a test app, both on real sockets.
type rig struct {
	app      *testApp
	rcv      *httptest.Server
	logs     *testutil.SyncBuffer
	outcomes *outcomes
}

// newRig starts a Receiver with the current vector secret and a clock 30 s
// after the vectors were signed, forwarding to a new test app at /hooks/kh.
// It fails the test if the log ever holds a secret or a signature.
func newRig(t testing.TB, mutate ...func(*webhook.Receiver)) *rig {
	t.Helper()
	app := newTestApp(t)
	u, err := url.Parse(app.srv.URL + "/hooks/kh?src=khproxy")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	oc := &outcomes{n: map[webhook.Outcome]int{}}
	rc := &webhook.Receiver{
		Secret:    signer.StaticSecret(secretCurrent),
		Now:       func() time.Time { return vecNow },
		Next:      &webhook.Forwarder{URL: u, Logger: log},
		Logger:    log,
		OnOutcome: oc.add,
	}
	for _, m := range mutate {
		m(rc)
	}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("receiver log:\n%s", logs.String())
		}
		for _, s := range []string{secretCurrent, secretPrevious, sigCurrent, sigPrevious, sigCurrent2} {
			if strings.Contains(logs.String(), s) {
				t.Errorf("the log contains a secret or signature %.12s…", s)
			}
		}
	})
	return &rig{app: app, rcv: srv, logs: logs, outcomes: oc}
}

// signed returns the header value of a vector signed at vecT.
func signed(sigs ...string) string {
	h := "t=" + strconv.Itoa(vecT)
	for _, s := range sigs {
		h += ",v1=" + s
	}
	return h
}

// post sends body to the receiver at path with the given headers and returns
// the response with its body read.
func (r *rig) post(t testing.TB, path string, header http.Header, body string) (*http.Response, []byte) {
	t.Helper()
	return r.do(t, http.MethodPost, path, header, strings.NewReader(body), int64(len(body)))
}

func (r *rig) do(t testing.TB, method, path string, header http.Header, body io.Reader, length int64) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, r.rcv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	for k, v := range header {
		req.Header[k] = v
	}
	return testutil.Do(t, r.rcv.Client(), req)
}

// sigHeader is a header set with the default signature header.
func sigHeader(value string) http.Header {
	return http.Header{webhook.DefaultHeader: {value}, "Content-Type": {"application/json"}}
}

// wantProblem checks a problem+json answer with status and reason.
func wantProblem(t testing.TB, resp *http.Response, body []byte, status int, reason webhook.Outcome) {
	t.Helper()
	p := testutil.Problem(t, resp, body, status)
	if p["reason"] != string(reason) || p["type"] != webhook.TypePrefix+string(reason) || p["detail"] == "" {
		t.Errorf("problem = %v, want reason %s", p, reason)
	}
}
