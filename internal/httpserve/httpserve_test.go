package httpserve_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"khproxy/internal/httpserve"

	"khproxy/internal/testutil"
)

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestServeFinishesInFlightRequestsThenReturnsNil(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	var order []string
	errc := make(chan error, 1)
	go func() {
		errc <- httpserve.Serve(ctx, httpserve.Options{BeforeShutdown: func() { order = append(order, "before") }},
			httpserve.Server{Name: "slow", Listener: ln, Handler: slow})
	}()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-started
	cancel()
	testutil.WaitClosed(t, ln.Addr().String()) // shutdown has begun; the answer must still come
	close(release)
	if g := <-got; g != "done" {
		t.Errorf("in-flight request got %q, want done", g)
	}
	if err := <-errc; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if len(order) != 1 {
		t.Errorf("BeforeShutdown called %d times, want 1", len(order))
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepts after Serve returned")
	}
}

func TestServeNamesTheServerThatMissedTheGrace(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		errc <- httpserve.Serve(ctx, httpserve.Options{Grace: 100 * time.Millisecond},
			httpserve.Server{Name: "stuck", Listener: ln, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-block
			})})
	}()
	go http.Get("http://" + ln.Addr().String())
	<-started
	cancel()
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "stuck: shutdown") {
		t.Errorf("Serve = %v, want a shutdown error naming stuck", err)
	}
	if !httpserve.OnlyGraceExpired(err) {
		t.Errorf("OnlyGraceExpired(%v) = false, want true", err)
	}
}

func TestServeStopsAllWhenOneFails(t *testing.T) {
	good := listen(t)
	bad := listen(t)
	bad.Close() // Serve on a closed listener fails at once
	err := httpserve.Serve(context.Background(), httpserve.Options{},
		httpserve.Server{Name: "good", Listener: good, Handler: http.NotFoundHandler()},
		httpserve.Server{Name: "bad", Listener: bad, Handler: http.NotFoundHandler()})
	if err == nil || !strings.Contains(err.Error(), "bad: serve") {
		t.Errorf("Serve = %v, want an error naming bad", err)
	}
	if httpserve.OnlyGraceExpired(err) {
		t.Errorf("OnlyGraceExpired(%v) = true for a server that failed", err)
	}
	if _, err := net.Dial("tcp", good.Addr().String()); err == nil {
		t.Error("the good listener still accepts")
	}
}

// TestServeDelay: once ctx is done, BeforeShutdown runs at once and new
// connections are still served for the delay, then the listener closes.
func TestServeDelay(t *testing.T) {
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	stopping := make(chan struct{})
	errc := make(chan error, 1)
	const delay = 2 * time.Second // a margin for a busy machine; the request takes milliseconds
	go func() {
		errc <- httpserve.Serve(ctx, httpserve.Options{Delay: delay, BeforeShutdown: func() { close(stopping) }},
			httpserve.Server{Name: "app", Listener: ln, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "served")
			})})
	}()
	cancel()
	<-stopping
	start := time.Now()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatalf("request during the delay: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "served" {
		t.Errorf("request during the delay got %q", b)
	}
	if err := <-errc; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if waited := time.Since(start); waited < delay/2 {
		t.Errorf("Serve returned %s after shutdown began, before the %s delay", waited, delay)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepts after Serve returned")
	}
}

// TestServeShutsDownTogetherThenLast: servers stop accepting together (a
// webhook listener does not go on taking deliveries while the proxy
// drains), and a Last server answers until the others are done.
func TestServeShutsDownTogetherThenLast(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})
	proxyLn, hookLn, adminLn := listen(t), listen(t), listen(t)
	stopping := make(chan string, 3)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- httpserve.Serve(ctx, httpserve.Options{},
			httpserve.Server{Name: "proxy", Listener: proxyLn, Handler: slow, Stopping: func() { stopping <- "proxy" }},
			httpserve.Server{Name: "webhook", Listener: hookLn, Handler: http.NotFoundHandler(), Stopping: func() { stopping <- "webhook" }},
			httpserve.Server{Name: "admin", Listener: adminLn, Handler: http.NotFoundHandler(), Stopping: func() { stopping <- "admin" }, Last: true})
	}()
	go http.Get("http://" + proxyLn.Addr().String())
	<-started
	cancel()
	next := func() string {
		t.Helper()
		select {
		case name := <-stopping:
			return name
		case <-time.After(5 * time.Second):
			close(release)
			t.Fatal("no further server stopping while the proxy drains")
			return ""
		}
	}
	got := map[string]bool{next(): true, next(): true}
	if !got["proxy"] || !got["webhook"] {
		t.Fatalf("stopping first: %v, want proxy and webhook while the proxy drains", got)
	}
	resp, err := http.Get("http://" + adminLn.Addr().String())
	if err != nil {
		t.Fatalf("the Last server stopped answering while the proxy drains: %v", err)
	}
	resp.Body.Close()
	select {
	case name := <-stopping:
		t.Fatalf("%s stopping before the proxy drained", name)
	default:
	}
	close(release)
	if name := <-stopping; name != "admin" {
		t.Errorf("stopping last: %s, want admin", name)
	}
	if err := <-errc; err != nil {
		t.Errorf("Serve = %v", err)
	}
}
