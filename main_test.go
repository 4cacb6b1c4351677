package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"khproxy/config"
	"khproxy/emulator"
	"khproxy/internal/logbatch"
	"khproxy/internal/testutil"
)

const (
	testKey    = "kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	testSecret = "main-test-secret-value"
)

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, v := range append(config.Vars(), config.DemoVars()...) {
		if !strings.Contains(out.String(), v.Name) || !strings.Contains(out.String(), v.Help) {
			t.Errorf("help lacks %s or its meaning", v.Name)
		}
		if v.Default != "" && !strings.Contains(out.String(), "(default "+v.Default+")") {
			t.Errorf("help lacks the default of %s", v.Name)
		}
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	spaced := filepath.Join(dir, "spaced")
	if err := os.WriteFile(spaced, []byte("two words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     []string
		want    string
		wantErr error
	}{
		{"unknown command", []string{"frobnicate"}, nil, "frobnicate", errUsage},
		{"no key", nil, []string{"KH_SECRET=x"}, "KH_KEY", nil},
		{"bad listen", nil, []string{"KH_KEY=" + testKey, "KH_SECRET=x", "KH_LISTEN=nope"}, "KH_LISTEN", nil},
		{"upstream ends in /v1", nil, []string{"KH_KEY=" + testKey, "KH_SECRET=x", "KH_UPSTREAM=https://www.kernelhost.com/cp/kh_reseller_api/v1"}, "KH_UPSTREAM=https://www.kernelhost.com/cp/kh_reseller_api", nil},
		{"port taken", nil, []string{"KH_KEY=" + testKey, "KH_SECRET=x", "KH_LISTEN=256.0.0.1:1"}, "KH_LISTEN", nil},
		{"secret with newline", nil, []string{"KH_KEY=" + testKey, "KH_SECRET=abc\n"}, "KH_SECRET", nil},
		{"secret with control", nil, []string{"KH_KEY=" + testKey, "KH_SECRET=a\x00b"}, "KH_SECRET", nil},
		{"secret file missing", nil, []string{"KH_KEY=" + testKey, "KH_SECRET_FILE=" + filepath.Join(dir, "nope")}, "KH_SECRET_FILE", nil},
		{"secret file with space", nil, []string{"KH_KEY=" + testKey, "KH_SECRET_FILE=" + spaced}, "KH_SECRET_FILE", nil},
		{"emulator log level", []string{"emulator"}, []string{"KH_LOG_LEVEL=verbose"}, "KH_LOG_LEVEL", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, tt.env, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run = %v, want an error naming %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "two words") || strings.Contains(err.Error(), "abc") {
				t.Errorf("run = %v, quotes the secret", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("run = %v, want errors.Is %v", err, tt.wantErr)
			}
		})
	}
}

// waitListening reads the JSON log until the "listening" line and returns
// its address.
func waitListening(t testing.TB, logs *testutil.SyncBuffer, errc <-chan error) string {
	t.Helper()
	return waitLogAddr(t, logs, errc, "khproxy listening")
}

// waitLogAddr reads the JSON log until a line with message msg and returns
// its addr.
func waitLogAddr(t testing.TB, logs *testutil.SyncBuffer, errc <-chan error, msg string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for line := range strings.SplitSeq(logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
				return m["addr"].(string)
			}
		}
		select {
		case err := <-errc:
			t.Fatalf("run ended early: %v\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("khproxy did not start:\n%s", logs.String())
	return ""
}

func TestServeSignsAndShutsDownGracefully(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("KH-Signature") == "" || r.Header.Get("KH-Key") != testKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/api/v1/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "signed "+r.RequestURI)
	}))
	defer up.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &testutil.SyncBuffer{}
	env := []string{"KH_KEY=" + testKey, "KH_SECRET=" + testSecret, "KH_UPSTREAM=" + up.URL + "/api", "KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=", "KH_SHUTDOWN_DELAY=0s", "KH_LOG_FORMAT=json"}
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, env, io.Discard, logs) }()
	addr := waitListening(t, logs, errc)

	resp, err := http.Get("http://" + addr + "/v1/products?page=2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(body), "signed /api/v1/products?page=2"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}

	// An in-flight request survives the shutdown signal.
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/v1/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	<-started
	cancel()
	testutil.WaitClosed(t, addr) // shutdown has begun; the request must still be answered
	close(release)
	if got, want := <-slow, "signed /api/v1/slow"; got != want {
		t.Errorf("in-flight request got %q, want %q", got, want)
	}
	if err := <-errc; err != nil {
		t.Errorf("run = %v, want nil after a graceful stop", err)
	}
	if strings.Contains(logs.String(), testSecret) {
		t.Error("the log contains the secret")
	}
}

// TestDockerfileBuild builds the binary with the Dockerfile's own build
// command, checks that it is static, and stops it with SIGTERM as Kubernetes
// would.
func TestDockerfileBuild(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a binary")
	}
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*) -o (\S+) \.$`).FindSubmatch(df)
	if m == nil {
		t.Fatal("Dockerfile has no RUN CGO_ENABLED=0 go build ... -o OUT . line")
	}
	bin := filepath.Join(t.TempDir(), "khproxy")
	cmd := exec.Command("sh", "-c", string(m[1])+" -o "+bin+" .")
	const stamped = "v0.0.0-dockerfile-test"
	cmd.Env = append(os.Environ(), "VERSION="+stamped) // the Dockerfile's ARG
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has an ELF interpreter: not static, will not run on distroless/static")
		}
	}
	f.Close()

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "version").Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(out), "khproxy "+stamped+" go") {
			t.Errorf("khproxy version = %q, want the version stamped with -ldflags -X", out)
		}
	})
	t.Run("SIGTERM", func(t *testing.T) { testBinarySIGTERM(t, bin) })
	t.Run("second SIGTERM", func(t *testing.T) { testBinarySecondSignal(t, bin) })
	t.Run("HTTP_PROXY", func(t *testing.T) { testBinaryForwardProxy(t, bin) })
	t.Run("JSON log with Redis down", func(t *testing.T) { testBinaryJSONWithRedisDown(t, bin) })
	t.Run("JSON log on a bad setting", func(t *testing.T) { testBinaryJSONOnBadSetting(t, bin) })
}

// startBinary starts the built khproxy with env and returns its address.
func startBinary(t *testing.T, bin string, env ...string) (*exec.Cmd, string) {
	t.Helper()
	proc := exec.Command(bin)
	proc.Env = append([]string{"KH_KEY=" + testKey, "KH_SECRET=" + testSecret, "KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=", "KH_SHUTDOWN_DELAY=0s"}, env...)
	stderr, _ := proc.StderrPipe()
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var addr string
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "khproxy listening" {
			addr = fmt.Sprint(line["addr"])
			break
		}
	}
	if addr == "" {
		proc.Process.Kill()
		t.Fatal("binary did not log its address")
	}
	go io.Copy(io.Discard, stderr)
	t.Cleanup(func() { proc.Process.Kill(); proc.Wait() })
	return proc, addr
}

func testBinarySIGTERM(t *testing.T, bin string) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	proc, addr := startBinary(t, bin, "KH_UPSTREAM="+up.URL)
	resp, err := http.Get("http://" + addr + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status = %d", resp.StatusCode)
	}
	proc.Process.Signal(syscall.SIGTERM)
	if err := proc.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v, want exit 0", err)
	}
}

// testBinaryForwardProxy checks that HTTP_PROXY and HTTPS_PROXY are honoured:
// a plain-http upstream is reached through the forward proxy with an
// absolute-form target, an https one through a CONNECT tunnel.
func testBinaryForwardProxy(t *testing.T, bin string) {
	var mu sync.Mutex
	var seen []string
	fwd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI+" sig="+fmt.Sprint(r.Header.Get("KH-Signature") != ""))
		mu.Unlock()
		if r.Method == http.MethodConnect {
			w.WriteHeader(http.StatusForbidden) // no tunnel: the attempt fails
			return
		}
		io.WriteString(w, "via forward proxy")
	}))
	defer fwd.Close()
	_, addr := startBinary(t, bin, "HTTP_PROXY="+fwd.URL, "HTTPS_PROXY="+fwd.URL,
		"KH_UPSTREAM=http://api.khproxy.invalid/cp/kh_reseller_api", "KH_RETRY_MAX=0")
	resp, err := http.Get("http://" + addr + "/v1/products?page=2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "via forward proxy" {
		t.Errorf("body = %q", body)
	}
	_, addr2 := startBinary(t, bin, "HTTPS_PROXY="+fwd.URL, "KH_UPSTREAM=https://api.khproxy.invalid/cp/kh_reseller_api", "KH_RETRY_MAX=0")
	if resp, err := http.Get("http://" + addr2 + "/v1/products"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("https upstream without tunnel: status %d, want 502", resp.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"GET http://api.khproxy.invalid/cp/kh_reseller_api/v1/products?page=2 sig=true",
		"CONNECT api.khproxy.invalid:443 sig=false",
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("forward proxy saw\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

func TestLogLevels(t *testing.T) {
	logger := func(w io.Writer, level string) *slog.Logger {
		t.Helper()
		lc, err := config.LoadLogging([]string{"KH_LOG_LEVEL=" + level, "KH_LOG_FORMAT=json"})
		if err != nil {
			t.Fatal(err)
		}
		return newLogger(w, lc)
	}
	for _, level := range []string{"warn", "WARN", "warning", "WARNING", "error"} {
		var b bytes.Buffer
		logger(&b, level).Info("hidden")
		if b.Len() != 0 {
			t.Errorf("KH_LOG_LEVEL=%s logs at info", level)
		}
	}
	var b bytes.Buffer
	logger(&b, "DEBUG").Debug("shown")
	if b.Len() == 0 {
		t.Error("KH_LOG_LEVEL=DEBUG hides debug lines")
	}
}

// TestBatchedLog checks the log of a khproxy whose stderr is not a
// terminal: routine lines are held for a batch, a warning goes out at once
// after them, and closing writes what is left.
func TestBatchedLog(t *testing.T) {
	var out testutil.SyncBuffer
	w, closeLog := batchedLog(&out)
	if _, ok := w.(*logbatch.Writer); !ok {
		t.Fatalf("batchedLog gave %T off a terminal, want a *logbatch.Writer", w)
	}
	lc, err := config.LoadLogging([]string{"KH_LOG_FORMAT=json"})
	if err != nil {
		t.Fatal(err)
	}
	log := newLogger(w, lc)
	log.Info("request", "n", 1)
	log.Warn("upstream unreachable")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"msg":"request"`) || !strings.Contains(lines[1], `"msg":"upstream unreachable"`) {
		t.Fatalf("after a warning the log holds %q, want the info line then the warning", lines)
	}
	log.Info("request", "n", 2)
	closeLog()
	if got := strings.Count(out.String(), `"msg":"request"`); got != 2 {
		t.Errorf("after close the log holds %d access lines, want 2:\n%s", got, out.String())
	}
}

// TestSecretFileRotation is the Kubernetes story: the secret is a mounted
// file; the API's secret is rotated (the old one stops working at once) and
// the file is swapped; khproxy signs with the new one without a restart.
func TestSecretFileRotation(t *testing.T) {
	key, oldSecret, _ := emulator.NewCredentials()
	emu, err := emulator.New(emulator.Options{Keys: []emulator.Key{{ID: key, Secret: oldSecret, Scopes: emulator.AllScopes()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	up := httptest.NewServer(emu)
	defer up.Close()

	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	swap := func(secret string) {
		tmp := filepath.Join(dir, "tmp")
		if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	swap(oldSecret)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &testutil.SyncBuffer{}
	env := []string{"KH_KEY=" + key, "KH_SECRET_FILE=" + path, "KH_UPSTREAM=" + up.URL + emulator.DefaultBasePath,
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=", "KH_SHUTDOWN_DELAY=0s", "KH_LOG_FORMAT=json"}
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, env, io.Discard, logs) }()
	addr := waitListening(t, logs, errc)
	status := func() int {
		resp, err := http.Get("http://" + addr + "/v1/me")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != 200 {
		t.Fatalf("before rotation: %d", got)
	}

	_, newSecret, _ := emulator.NewCredentials()
	if err := emu.SetKey(emulator.Key{ID: key, Secret: newSecret, Scopes: emulator.AllScopes()}); err != nil {
		t.Fatal(err)
	}
	swap(newSecret)
	deadline := time.Now().Add(5 * time.Second)
	for status() != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("still not signing with the rotated secret:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// An info line: the log writes it within its batch delay.
	testutil.WaitFor(t, "the log line about the rotation", func() bool {
		return strings.Contains(logs.String(), "secret file changed")
	})
	for _, s := range []string{oldSecret, newSecret} {
		if strings.Contains(logs.String(), s) {
			t.Error("the log contains a secret")
		}
	}
}
