package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"khproxy/internal/httpserve"
	"khproxy/internal/testutil"
)

// TestSafetySettingsTakeEffect runs khproxy with small limits and checks
// that each setting reaches the server or the proxy.
func TestSafetySettingsTakeEffect(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &testutil.SyncBuffer{}
	env := []string{"KH_KEY=" + testKey, "KH_SECRET=" + testSecret, "KH_UPSTREAM=" + up.URL + "/api",
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=", "KH_LOG_FORMAT=json",
		"KH_MAX_INFLIGHT_BYTES=1000", "KH_MAX_BODY_BYTES=1000", "KH_MAX_INFLIGHT_WAIT=100ms",
		"KH_READ_TIMEOUT=400ms", "KH_MAX_CONNS=1", "KH_SHUTDOWN_DELAY=0s"}
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, env, io.Discard, logs) }()
	addr := waitListening(t, logs, errc)

	send := func(req string) (*http.Response, map[string]any) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		var p map[string]any
		json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		return resp, p
	}
	// KH_MAX_INFLIGHT_BYTES, and KH_READ_TIMEOUT for a stalled body.
	if resp, p := send("POST /v1/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1001\r\n\r\n"); resp.StatusCode != 413 || !strings.Contains(p["detail"].(string), "1000") {
		t.Errorf("body over the limits: %d %v", resp.StatusCode, p)
	}
	// A connection the server closed holds its slot a moment longer (Go
	// waits before closing, so that the client reads the answer): while
	// the one connection allowed is still taken, the answer is 503.
	var resp *http.Response
	testutil.WaitFor(t, "an answer to a stalled body", func() bool {
		resp, _ = send("POST /v1/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc")
		return resp.StatusCode != http.StatusServiceUnavailable
	})
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("stalled body: %d, want 408", resp.StatusCode)
	}
	// KH_MAX_CONNS: while a stalled upload holds the one connection, a good
	// request is refused.
	if good, p := whileHeld(t, addr, func() (*http.Response, map[string]any) {
		return send("GET /v1/products HTTP/1.1\r\nHost: localhost\r\n\r\n")
	}); good.StatusCode != http.StatusServiceUnavailable || p["type"] != "urn:khproxy:problem:overloaded" {
		t.Errorf("while the one connection was held: %d %v, want 503 overloaded", good.StatusCode, p)
	}
	testutil.WaitFor(t, "good requests once the stalled upload is cut", func() bool {
		resp, _ := send("GET /v1/products HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		return resp.StatusCode == http.StatusOK
	})
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("run = %v", err)
	}
}

// whileHeld holds a connection to addr with a stalled upload, sends probe
// meanwhile and returns what it got. The held connection is itself refused
// when a closed one still holds the slot (Go waits up to half a second
// before closing a connection, so that the client reads the answer): then
// it tries again, for up to 10 s. A refusal comes at once, so the bound is
// time, not a number of tries.
func whileHeld(t *testing.T, addr string, probe func() (*http.Response, map[string]any)) (*http.Response, map[string]any) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		held, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(held, "POST /v1/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc")
		heldStatus := make(chan int, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(held), nil)
			if err != nil {
				heldStatus <- 0
				return
			}
			heldStatus <- resp.StatusCode
		}()
		resp, p := probe()
		h := <-heldStatus
		held.Close()
		if h == http.StatusRequestTimeout { // it was served, and cut by the read timeout
			return resp, p
		}
	}
	t.Fatal("the stalled upload was never served")
	return nil, nil
}

// TestShutdownLogsRequestsInDoubt: when KH_SHUTDOWN_TIMEOUT runs out with an
// order still in flight upstream, khproxy names it before it exits, with
// the key to check it by.
func TestShutdownLogsRequestsInDoubt(t *testing.T) {
	arrived, release := make(chan string, 1), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arrived <- r.Header.Get("Idempotency-Key")
		<-release
	}))
	defer up.Close()
	defer close(release) // before up.Close, which waits for the handler
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &testutil.SyncBuffer{}
	env := []string{"KH_KEY=" + testKey, "KH_SECRET=" + testSecret, "KH_UPSTREAM=" + up.URL + "/api",
		"KH_LISTEN=127.0.0.1:0", "KH_LOG_FORMAT=json", "KH_ADMIN_LISTEN=",
		"KH_SHUTDOWN_DELAY=0s", "KH_SHUTDOWN_TIMEOUT=300ms"}
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, env, io.Discard, logs) }()
	addr := waitListening(t, logs, errc)
	go http.Post("http://"+addr+"/v1/orders", "application/json", strings.NewReader(`{"product_id":42}`))
	key := <-arrived
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("run = %v, want nil: a shutdown that ran out of time still exits 0", err)
	}
	var inDoubt map[string]any
	for line := range strings.SplitSeq(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && strings.HasPrefix(fmt.Sprint(m["msg"]), "request in doubt") {
			inDoubt = m
		}
	}
	if inDoubt["method"] != "POST" || inDoubt["path"] != "/v1/orders" || inDoubt["idempotency_key"] != key || key == "" {
		t.Errorf("in-doubt line %v, want POST /v1/orders with key %q:\n%s", inDoubt, key, logs.String())
	}
}

// TestAdminListenerBounded repeats the attack of issue 19, scaled down:
// many connections to the admin listener that send nothing. Beyond its own
// small limit they are closed at once, instead of each holding a file
// descriptor until its headers time out, and the signing listener goes on
// answering.
func TestAdminListenerBounded(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	r := startRun(t, "KH_KEY="+testKey, "KH_SECRET="+testSecret, "KH_UPSTREAM="+up.URL+"/api",
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_SHUTDOWN_DELAY=0s")
	addr := strings.TrimPrefix(r.admin, "http://")
	const conns = 100
	var open []net.Conn
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}
	// The ones over the limit are closed at once; the others wait for
	// their headers.
	// (Read in parallel: a Read past its deadline fails at once, even
	// with the close waiting.)
	var kept atomic.Int32
	var wg sync.WaitGroup
	for _, c := range open {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond)) // well within the header timeout
			if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
				kept.Add(1)
			}
		})
	}
	wg.Wait()
	if limit := httpserve.OpenConns(adminMaxConns); int(kept.Load()) > limit {
		t.Errorf("%d of %d idle connections kept open by the admin listener, want at most %d", kept.Load(), conns, limit)
	}
	resp, err := http.Get("http://" + r.proxy + "/v1/products")
	if err != nil {
		t.Fatalf("the signing listener beside a flooded admin listener: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the signing listener beside a flooded admin listener: %d, want 200", resp.StatusCode)
	}
}

// TestOpenFileCheckCountsAdmin: the open-file check counts the admin
// listener's connections besides KH_MAX_CONNS on the signing listener.
func TestOpenFileCheckCountsAdmin(t *testing.T) {
	const maxConns = 100
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("no open-file limit to read: %v", err)
	}
	// Room for the signing listener and the reserve, not for the admin
	// listener's connections too.
	low := uint64(httpserve.OpenConns(maxConns) + fdReserve + httpserve.OpenConns(adminMaxConns)/2)
	if lim.Cur < low {
		t.Skipf("the open-file limit %d is already below %d", lim.Cur, low)
	}
	set := lim
	set.Cur = low
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &set); err != nil {
		t.Skipf("cannot lower the open-file limit: %v", err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	for _, admin := range []string{"127.0.0.1:0", ""} {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		r := startRun(t, "KH_KEY="+testKey, "KH_SECRET="+testSecret, "KH_UPSTREAM="+up.URL+"/api",
			"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN="+admin, fmt.Sprintf("KH_MAX_CONNS=%d", maxConns), "KH_SHUTDOWN_DELAY=0s")
		warned := strings.Contains(r.logs.String(), "leaves too few file descriptors")
		if warned != (admin != "") {
			t.Errorf("admin listener %q: warned %v, want a warning only with the admin listener on", admin, warned)
		}
		r.cancel()
		<-r.errc
		up.Close()
	}
}
