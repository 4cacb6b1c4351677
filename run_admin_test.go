package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"khproxy/admin"
	"khproxy/apiroute"
	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/internal/testutil"
)

// api is the emulator behind a real socket, with two switches for tests:
// GET /v1/health waits for health to be closed, and GET /v1/slow, which the
// emulator does not know, arrives on slowArrived and waits for slowRelease.
type api struct {
	emu         *emulator.Emulator
	srv         *httptest.Server
	key, secret string
	health      chan struct{}
	slowArrived chan struct{}
	slowRelease chan struct{}
}

// startAPI starts the emulator with one all-scopes key. With holdHealth its
// health endpoint waits until releaseHealth; else it answers at once.
func startAPI(t testing.TB, holdHealth bool) *api {
	t.Helper()
	emu, key, secret := emulatortest.New(t)
	a := &api{emu: emu, key: key, secret: secret, health: make(chan struct{}),
		slowArrived: make(chan struct{}, 1), slowRelease: make(chan struct{})}
	if !holdHealth {
		a.releaseHealth()
	}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case emulator.DefaultBasePath + "/v1/health":
			<-a.health
		case emulator.DefaultBasePath + "/v1/slow":
			a.slowArrived <- struct{}{}
			<-a.slowRelease
			io.WriteString(w, "slow answer")
			return
		}
		emu.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		a.srv.Close()
		emu.Close()
	})
	return a
}

// releaseHealth lets GET /v1/health through; call it once.
func (a *api) releaseHealth() { close(a.health) }

func (a *api) upstream() string { return a.srv.URL + emulator.DefaultBasePath }

// running is khproxy's run in a goroutine, with its addresses.
type running struct {
	cancel context.CancelFunc
	errc   chan error
	logs   *testutil.SyncBuffer
	proxy  string // the signing listener's address
	admin  string // the admin listener's base URL
}

// startRun runs khproxy with env until the test ends (or cancel). The API's
// health is polled once an hour unless env says otherwise, so that faults a
// test injects are the proxy's to meet.
func startRun(t testing.TB, env ...string) *running {
	t.Helper()
	env = append([]string{"KH_UPSTREAM_CHECK_INTERVAL=1h"}, env...)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, errc: make(chan error, 1), logs: &testutil.SyncBuffer{}}
	go func() { r.errc <- run(ctx, nil, append(env, "KH_LOG_FORMAT=json"), io.Discard, r.logs) }()
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			t.Logf("khproxy log:\n%s", r.logs.String())
		}
	})
	r.proxy = waitListening(t, r.logs, r.errc)
	if addr := logValue(r.logs, "admin listener: /healthz, /readyz, /metrics", "addr"); addr != "" {
		r.admin = "http://" + addr
	}
	return r
}

// logValue returns key's value on the first log line with message msg.
func logValue(logs *testutil.SyncBuffer, msg, key string) string {
	for line := range strings.SplitSeq(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			s, _ := m[key].(string)
			return s
		}
	}
	return ""
}

// get sends GET url on a new connection and returns the status and body, or
// status 0 and the error's text.
func get(url string) (int, string) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// writeFile writes content to a new file in dir and returns its path.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestProbesThroughTheLifecycle runs khproxy as the Kubernetes manifest
// does (key and secret from files, admin listener on) and follows /readyz,
// /healthz and khproxy_upstream_up from start to exit: before the API
// answered, the API up, failing with 503, answering its health poll with
// 429, recovering; then shutdown with its delay (a request 1 s after the
// signal still succeeds) and its grace (the admin listener outlives the
// proxy's), exit without error. Readiness is khproxy's own state
// throughout: the API's health is only the gauge and the log.
func TestProbesThroughTheLifecycle(t *testing.T) {
	a := startAPI(t, true)
	dir := t.TempDir()
	r := startRun(t,
		"KH_KEY_FILE="+writeFile(t, dir, "key", a.key+"\n"),
		"KH_SECRET_FILE="+writeFile(t, dir, "secret", a.secret+"\n"),
		"KH_UPSTREAM="+a.upstream(), "KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0",
		"KH_UPSTREAM_CHECK_INTERVAL=50ms", "KH_SHUTDOWN_DELAY=3s", "KH_SHUTDOWN_TIMEOUT=20s")
	readyz := func() (int, string) { return get(r.admin + admin.PathReadyz) }
	healthz := func() int { code, _ := get(r.admin + admin.PathHealthz); return code }
	proxied := func(path string) (int, string) { return get("http://" + r.proxy + path) }
	up := func() float64 { return r.scrape(t)["khproxy_upstream_up"] }
	wantReady := func(t *testing.T, when string) {
		t.Helper()
		if code, body := readyz(); code != 200 || body != "ok\n" {
			t.Errorf("/readyz %s = %d %q, want 200: readiness is khproxy's own", when, code, body)
		}
		if code := healthz(); code != 200 {
			t.Errorf("/healthz %s = %d, want 200", when, code)
		}
	}

	t.Run("before the API answered", func(t *testing.T) {
		wantReady(t, "before the API's health answered")
		if got, ok := r.scrape(t)["khproxy_upstream_up"]; !ok || got != 0 {
			t.Errorf("khproxy_upstream_up = %v (present: %v), want 0", got, ok)
		}
		// The key came from its file.
		if code, body := proxied("/v1/me"); code != 200 {
			t.Errorf("GET /v1/me = %d %s", code, body)
		}
	})
	t.Run("API up", func(t *testing.T) {
		a.releaseHealth()
		testutil.WaitFor(t, "khproxy_upstream_up 1", func() bool { return up() == 1 })
		wantReady(t, "with the API up")
	})
	t.Run("API down", func(t *testing.T) {
		if err := a.emu.SetFaults(emulator.Faults{FailCount: 1 << 30, FailStatus: 503}); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, "khproxy_upstream_up 0", func() bool { return up() == 0 })
		wantReady(t, "with the API down")
		// The last error is in the log, at WARN.
		want := "GET " + a.upstream() + "/v1/health: 503 Service Unavailable"
		testutil.WaitFor(t, "the API's failure logged", func() bool {
			return logLine(r.logs, "health check failing", "error", want) != nil
		})
		if l := logLine(r.logs, "health check failing", "error", want); l != nil && l["level"] != "WARN" {
			t.Errorf("the failing health check is logged at %v, want WARN", l["level"])
		}
		// Callers get the API's own answer, as before.
		if code, _ := proxied("/v1/me"); code != 503 {
			t.Errorf("GET /v1/me with the API down = %d, want the API's 503", code)
		}
	})
	t.Run("health answers 429", func(t *testing.T) {
		if err := a.emu.SetFaults(emulator.Faults{FailCount: 1 << 30, FailStatus: 429}); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, "khproxy_upstream_up 1 on 429", func() bool { return up() == 1 })
		wantReady(t, "with the API answering 429")
		if err := a.emu.SetFaults(emulator.Faults{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("shutdown", func(t *testing.T) { testShutdown(t, r, a) })
}

// logLine returns the first JSON log line with message msg whose key holds
// value, nil when there is none.
func logLine(logs *testutil.SyncBuffer, msg, key string, value any) map[string]any {
	for line := range strings.SplitSeq(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg && m[key] == value {
			return m
		}
	}
	return nil
}

// testShutdown cancels r's context, as SIGTERM does, with a request in
// flight, and follows the probes and the proxy until run returns.
func testShutdown(t *testing.T, r *running, a *api) {
	readyz := func() (int, string) { return get(r.admin + admin.PathReadyz) }
	healthz := func() int { code, _ := get(r.admin + admin.PathHealthz); return code }
	proxied := func(path string) (int, string) { return get("http://" + r.proxy + path) }
	slow := make(chan int, 1)
	go func() { code, _ := proxied("/v1/slow"); slow <- code }()
	<-a.slowArrived

	r.cancel() // what SIGTERM does in main
	testutil.WaitFor(t, "/readyz: shutting down", func() bool {
		code, body := readyz()
		return code == 503 && body == "not ready: shutting down\n"
	})
	if code := healthz(); code != 200 {
		t.Errorf("/healthz during shutdown = %d, want 200", code)
	}
	time.Sleep(time.Second)
	if code, body := proxied("/v1/me"); code != 200 {
		t.Errorf("GET /v1/me 1 s after the signal = %d %s, want 200 (KH_SHUTDOWN_DELAY is 3s)", code, body)
	}

	// After the delay the proxy stops accepting; the in-flight request
	// holds the grace period, and the admin listener still answers.
	testutil.WaitFor(t, "the proxy to stop accepting", func() bool {
		c, err := net.Dial("tcp", r.proxy)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if code, body := readyz(); code != 503 || body != "not ready: shutting down\n" {
		t.Errorf("/readyz while draining = %d %q", code, body)
	}
	close(a.slowRelease)
	if code := <-slow; code != 200 {
		t.Errorf("the in-flight request got %d, want 200", code)
	}
	if err := <-r.errc; err != nil {
		t.Errorf("run = %v, want nil", err)
	}
	if code, _ := get(r.admin + admin.PathHealthz); code != 0 {
		t.Errorf("the admin listener still answers after run returned: %d", code)
	}
}

// send sends a request through the proxy and fails t unless the answer has
// status want.
func (r *running) send(t testing.TB, method, path, body string, want int) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+r.proxy+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d, want %d", method, path, resp.StatusCode, want)
	}
}

// scrape reads the admin listener's /metrics.
func (r *running) scrape(t testing.TB) map[string]float64 {
	t.Helper()
	return testutil.Scrape(t, r.admin+admin.PathMetrics)
}

// TestMetricsAfterKnownRequests sends a known set of requests, one of them
// retried and one to a path that is no API route, and reads /metrics.
func TestMetricsAfterKnownRequests(t *testing.T) {
	old := version
	version = "v0.0.0-metrics-test"
	t.Cleanup(func() { version = old })
	a := startAPI(t, false)
	r := startRun(t, "KH_KEY="+a.key, "KH_SECRET="+a.secret, "KH_UPSTREAM="+a.upstream(),
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_SHUTDOWN_DELAY=0s")
	testutil.WaitFor(t, "ready", func() bool { code, _ := get(r.admin + admin.PathReadyz); return code == 200 })

	r.send(t, "GET", "/v1/products", "", 200)
	r.send(t, "GET", "/v1/products/42?full=1", "", 200)
	r.send(t, "GET", "/v1/no/such/route/4711", "", 404)
	if err := a.emu.SetFaults(emulator.Faults{FailCount: 1, FailStatus: 503}); err != nil {
		t.Fatal(err)
	}
	r.send(t, "GET", "/v1/me", "", 200) // 503, retried
	r.send(t, "POST", "/v1/orders", testutil.OrderBody, 201)

	// Requests are counted once answered: wait for the last.
	var got map[string]float64
	testutil.WaitFor(t, "5 requests counted", func() bool {
		got = r.scrape(t)
		n := 0.0
		for k, v := range got {
			if strings.HasPrefix(k, "khproxy_requests_total{") {
				n += v
			}
		}
		return n == 5 && got["khproxy_inflight_requests"] == 0
	})
	want := map[string]float64{
		`khproxy_requests_total{code="200",method="GET",route="/v1/products"}`:                1,
		`khproxy_requests_total{code="200",method="GET",route="/v1/products/{id}"}`:           1,
		`khproxy_requests_total{code="404",method="GET",route="other"}`:                       1,
		`khproxy_requests_total{code="200",method="GET",route="/v1/me"}`:                      1,
		`khproxy_requests_total{code="201",method="POST",route="/v1/orders"}`:                 1,
		`khproxy_request_duration_seconds_count{method="GET",route="/v1/products"}`:           1,
		`khproxy_request_duration_seconds_count{method="GET",route="other"}`:                  1,
		`khproxy_request_duration_seconds_count{method="GET",route="/v1/me"}`:                 1,
		`khproxy_request_duration_seconds_count{method="POST",route="/v1/orders"}`:            1,
		`khproxy_upstream_attempts_total{reason="first"}`:                                     5,
		`khproxy_upstream_attempts_total{reason="unavailable"}`:                               1,
		`khproxy_idempotency_keys_total{source="auto"}`:                                       1,
		`khproxy_idempotency_keys_total{source="client"}`:                                     0,
		`khproxy_idempotency_keys_total{source="reused"}`:                                     0,
		`khproxy_clock_offset_seconds`:                                                        0,
		`khproxy_secret_reloads_total{result="error"}`:                                        0,
		`khproxy_build_info{goversion="` + runtime.Version() + `",version="` + version + `"}`: 1,
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s = %v (present: %v), want %v", k, g, ok, w)
		}
	}
	for k := range got {
		if strings.Contains(k, "no/such") || strings.Contains(k, "4711") || strings.Contains(k, "full=1") {
			t.Errorf("a raw path reached a label: %s", k)
		}
	}
	if v := logValue(r.logs, "khproxy listening", "version"); v != version {
		t.Errorf("the startup line says version %q, want %q", v, version)
	}
	// Access-log lines go out in batches, within the log's batch delay.
	testutil.WaitFor(t, "access-log lines", func() bool { return strings.Contains(r.logs.String(), `"msg":"request"`) })
	checkAccessLogKeys(t, r.logs.String())
}

// startWithBrokenSecretFile runs khproxy with its secret in a file, waits
// until it is ready, then empties the file; fixSecret puts the secret back
// as Kubernetes does, by renaming a new file over it.
func startWithBrokenSecretFile(t *testing.T) (r *running, fixSecret func()) {
	t.Helper()
	a := startAPI(t, false)
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "secret", a.secret)
	r = startRun(t, "KH_KEY="+a.key, "KH_SECRET_FILE="+secretFile, "KH_UPSTREAM="+a.upstream(),
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_SHUTDOWN_DELAY=0s")
	testutil.WaitFor(t, "ready", func() bool { code, _ := get(r.admin + admin.PathReadyz); return code == 200 })

	if err := os.WriteFile(secretFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return r, func() {
		t.Helper()
		writeFile(t, dir, "secret.new", a.secret)
		if err := os.Rename(filepath.Join(dir, "secret.new"), secretFile); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSecretFileReloads: a secret file made unusable, then good again, is
// counted twice and fails readiness meanwhile.
func TestSecretFileReloads(t *testing.T) {
	t.Parallel()
	r, fixSecret := startWithBrokenSecretFile(t)
	testutil.WaitFor(t, "the failed reload counted", func() bool {
		r.send(t, "GET", "/v1/me", "", 200) // the last good secret signs; signing looks at the file
		return r.scrape(t)[`khproxy_secret_reloads_total{result="error"}`] == 1
	})
	if code, body := get(r.admin + admin.PathReadyz); code != 503 || !strings.HasPrefix(body, "not ready: KH_SECRET_FILE: ") {
		t.Errorf("/readyz with the secret file unusable = %d %q, want 503 naming KH_SECRET_FILE", code, body)
	}

	fixSecret()
	testutil.WaitFor(t, "the good reload counted", func() bool {
		r.send(t, "GET", "/v1/me", "", 200)
		return r.scrape(t)[`khproxy_secret_reloads_total{result="ok"}`] == 1
	})
	if code, body := get(r.admin + admin.PathReadyz); code != 200 {
		t.Errorf("/readyz with the secret file good again = %d %q, want 200", code, body)
	}
	if got := r.scrape(t)[`khproxy_secret_reloads_total{result="error"}`]; got != 1 {
		t.Errorf("failed reloads = %v, want 1", got)
	}
}

// TestReadinessFollowsTheSecretFileWithoutTraffic: /readyz itself looks at
// the secret file, so that a pod whose file became unusable turns unready,
// and ready again once it is fixed, even when no request arrives (an unready
// replica behind a Service gets none).
func TestReadinessFollowsTheSecretFileWithoutTraffic(t *testing.T) {
	t.Parallel()
	r, fixSecret := startWithBrokenSecretFile(t)
	testutil.WaitFor(t, "unready with the secret file empty", func() bool {
		code, body := get(r.admin + admin.PathReadyz)
		return code == 503 && strings.HasPrefix(body, "not ready: KH_SECRET_FILE: ")
	})

	fixSecret()
	testutil.WaitFor(t, "ready again with the secret file fixed", func() bool {
		code, _ := get(r.admin + admin.PathReadyz)
		return code == 200
	})
}

// accessLogKeys are the access log's keys that docs/operations.md documents as
// always present.
var accessLogKeys = []string{"time", "level", "msg", "method", "route", "path", "status", "duration_ms", "attempts", "idempotency_key", "request_id"}

// checkAccessLogKeys checks every access-log line in logs for the
// documented keys and their JSON types.
func checkAccessLogKeys(t *testing.T, logs string) {
	t.Helper()
	n := 0
	for line := range strings.SplitSeq(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "request" {
			continue
		}
		n++
		for _, k := range accessLogKeys {
			if _, ok := m[k]; !ok {
				t.Errorf("access log line lacks %q: %s", k, line)
			}
		}
		for _, k := range []string{"status", "duration_ms", "attempts"} {
			if _, ok := m[k].(float64); !ok {
				t.Errorf("access log %s is not a number: %s", k, line)
			}
		}
		if !slices.Contains(append(apiroute.Templates(), apiroute.Other), m["route"].(string)) {
			t.Errorf("access log route %q is not a template", m["route"])
		}
	}
	if n == 0 {
		t.Error("no access log lines")
	}
}

func TestUnixSocket(t *testing.T) {
	a := startAPI(t, false)
	env := func(listen string) []string {
		return []string{"KH_KEY=" + a.key, "KH_SECRET=" + a.secret, "KH_UPSTREAM=" + a.upstream(),
			"KH_LISTEN=unix:" + listen, "KH_ADMIN_LISTEN=", "KH_SHUTDOWN_DELAY=0s", "KH_LOG_FORMAT=json"}
	}
	t.Run("stale file, mode, removal", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "khproxy.sock")
		// A socket file whose process is gone, as after a SIGKILL.
		stale, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		stale.(*net.UnixListener).SetUnlinkOnClose(false)
		stale.Close()

		r := startRun(t, env(path)...)
		if r.proxy != path {
			t.Errorf("listening on %q, want %q", r.proxy, path)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
			t.Errorf("socket file mode = %v, want a socket with 0660", fi.Mode())
		}
		client := &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", path)
			},
		}}
		resp, err := client.Get("http://khproxy/v1/me")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET /v1/me over the socket = %d", resp.StatusCode)
		}
		client.CloseIdleConnections()
		r.cancel()
		if err := <-r.errc; err != nil {
			t.Fatalf("run = %v", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket file after exit: %v, want it removed", err)
		}
	})
	t.Run("in use", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "khproxy.sock")
		live, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		err = run(context.Background(), nil, env(path), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "KH_LISTEN") || !strings.Contains(err.Error(), "in use") {
			t.Errorf("run = %v, want a KH_LISTEN error saying the socket is in use", err)
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		path := writeFile(t, t.TempDir(), "khproxy.sock", "precious")
		err := run(context.Background(), nil, env(path), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "KH_LISTEN") || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("run = %v, want a KH_LISTEN error saying it is not a socket", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "precious" {
			t.Error("the file was changed")
		}
	})
}

func TestVersionCommand(t *testing.T) {
	for _, stamped := range []string{"", "v1.2.3"} {
		t.Run("stamped "+stamped, func(t *testing.T) {
			old := version
			version = stamped
			t.Cleanup(func() { version = old })
			var out strings.Builder
			if err := run(context.Background(), []string{"version"}, nil, &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			want := "khproxy " + buildVersion() + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
			if out.String() != want {
				t.Errorf("version printed %q, want %q", out.String(), want)
			}
			if stamped != "" && buildVersion() != stamped {
				t.Errorf("buildVersion = %q, want the stamped %q", buildVersion(), stamped)
			}
		})
	}
}

func TestAdminListenErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	env := []string{"KH_KEY=" + testKey, "KH_SECRET=x", "KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=" + taken.Addr().String()}
	err = run(context.Background(), nil, env, io.Discard, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "KH_ADMIN_LISTEN: ") {
		t.Errorf("run with the admin port taken = %v, want an error naming KH_ADMIN_LISTEN", err)
	}
}

// testBinarySecondSignal: a second SIGTERM during the shutdown delay ends
// the built binary at once, by the signal, instead of after the delay.
func testBinarySecondSignal(t *testing.T, bin string) {
	a := startAPI(t, false)
	proc, _ := startBinary(t, bin, "KH_UPSTREAM="+a.upstream(), "KH_SHUTDOWN_DELAY=10m")
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	// The first signal starts the shutdown; once main has seen it, the next
	// one kills. Signal until the process is gone.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(10 * time.Second) // the delay is 10 minutes
	for {
		if err := proc.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
				t.Errorf("after two SIGTERMs: %v, want death by the signal", err)
			}
			return
		case <-giveUp:
			t.Fatal("still running after repeated SIGTERMs: the second signal did not end it")
		case <-tick.C:
		}
	}
}

// TestWebhookOutcomesCounted: the webhook receiver's outcomes are counted on
// the one registry that /metrics serves.
func TestWebhookOutcomesCounted(t *testing.T) {
	a := startAPI(t, false)
	r := startRun(t, "KH_KEY="+a.key, "KH_SECRET="+a.secret, "KH_UPSTREAM="+a.upstream(),
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_SHUTDOWN_DELAY=0s",
		"KH_WEBHOOK_LISTEN=127.0.0.1:0", "KH_WEBHOOK_SECRET=whsec_test", "KH_WEBHOOK_FORWARD=http://127.0.0.1:9/hooks")
	hook := logValue(r.logs, "webhook receiver listening", "addr")
	if hook == "" {
		t.Fatalf("no webhook listener:\n%s", r.logs)
	}
	resp, err := http.Post("http://"+hook+"/", "application/json", strings.NewReader(`{"type":"order.paid"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("unsigned webhook = %d, want 400", resp.StatusCode)
	}
	testutil.WaitFor(t, "the rejection counted", func() bool {
		return r.scrape(t)[`khproxy_webhooks_total{outcome="no_signature"}`] == 1
	})
	if v, ok := r.scrape(t)[`khproxy_webhooks_total{outcome="forwarded"}`]; !ok || v != 0 {
		t.Errorf(`khproxy_webhooks_total{outcome="forwarded"} = %v (present: %v), want 0`, v, ok)
	}
}
