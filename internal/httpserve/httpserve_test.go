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
	time.Sleep(50 * time.Millisecond) // let shutdown begin; the answer must still come
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
	if _, err := net.Dial("tcp", good.Addr().String()); err == nil {
		t.Error("the good listener still accepts")
	}
}
