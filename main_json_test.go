package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

// checkJSONLines fails t for every line of stderr that is not one JSON
// object, and returns the decoded lines.
func checkJSONLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	if stderr == "" {
		t.Error("nothing on stderr")
	}
	for line := range strings.SplitSeq(strings.TrimSuffix(stderr, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("a stderr line is not JSON: %q", line)
			continue
		}
		lines = append(lines, m)
	}
	return lines
}

// testBinaryJSONWithRedisDown runs the binary with KH_LOG_FORMAT=json and a
// Redis that does not answer, sends requests (each tries Redis), stops it,
// and reads all of its stderr, the Redis client's own messages included:
// every line is JSON.
func testBinaryJSONWithRedisDown(t *testing.T, bin string) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	proc := exec.Command(bin)
	proc.Env = []string{"KH_KEY=" + testKey, "KH_SECRET=" + testSecret, "KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=",
		"KH_SHUTDOWN_DELAY=0s", "KH_LOG_FORMAT=json", "KH_UPSTREAM=" + up.URL,
		"KH_REDIS_URL=redis://127.0.0.1:1/0"} // nothing listens on port 1
	stderr := &testutil.SyncBuffer{}
	proc.Stderr = stderr
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Process.Kill(); proc.Wait() })
	var addr string
	testutil.WaitFor(t, "the listening line", func() bool {
		addr = logValue(stderr, "khproxy listening", "addr")
		return addr != ""
	})
	// The pool logs once several dials in a row failed.
	testutil.WaitFor(t, "the Redis client's message", func() bool {
		if resp, err := http.Get("http://" + addr + "/v1/me"); err == nil {
			resp.Body.Close()
		}
		return strings.Contains(stderr.String(), "failed to dial")
	})
	if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := proc.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
	redisLines := 0
	for _, m := range checkJSONLines(t, stderr.String()) {
		if m["msg"] == "redis client" {
			redisLines++
		}
	}
	if redisLines == 0 {
		t.Errorf("no redis client line in:\n%s", stderr)
	}
}

// testBinaryJSONOnBadSetting: a configuration that does not load ends
// khproxy with exit code 1 and one JSON line at ERROR naming the variable,
// also when the log format itself is the bad setting.
func testBinaryJSONOnBadSetting(t *testing.T, bin string) {
	for _, env := range [][]string{
		{"KH_LOG_FORMAT=json", "KH_RETRY_MAX=three"},
		{"KH_LOG_FORMAT=yaml"}, // not a terminal: the default, auto, means JSON
	} {
		t.Run(env[len(env)-1], func(t *testing.T) {
			proc := exec.Command(bin)
			proc.Env = append([]string{"KH_KEY=" + testKey, "KH_SECRET=" + testSecret}, env...)
			var stderr bytes.Buffer
			proc.Stderr = &stderr
			done := make(chan error, 1)
			go func() { done <- proc.Run() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				proc.Process.Kill()
				t.Fatal("khproxy did not exit")
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("exit = %v, want exit status 1", err)
			}
			lines := checkJSONLines(t, stderr.String())
			if len(lines) != 1 {
				t.Fatalf("%d lines, want one:\n%s", len(lines), stderr.String())
			}
			name, _, _ := strings.Cut(env[len(env)-1], "=")
			if lines[0]["level"] != "ERROR" || !strings.Contains(lines[0]["error"].(string), name+":") {
				t.Errorf("line = %v, want ERROR naming %s", lines[0], name)
			}
		})
	}
}
