package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/proxy"
)

// logLines returns the JSON log lines whose msg is msg.
func logLines(t testing.TB, logs *testutil.SyncBuffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestLogsTellTheTruth: status is what the caller got (499 when it left
// first), upstream_status the API's last answer, and every line about one
// request carries its request_id, which the caller gets as
// Khproxy-Request-Id.
func TestLogsTellTheTruth(t *testing.T) {
	t.Parallel()
	t.Run("caller left first", func(t *testing.T) {
		api := newIdemAPI(400*time.Millisecond, true)
		h := newHarness(t, api.serve, inDoubtOpts(2*time.Second, 5*time.Second))
		impatient := &http.Client{Timeout: 150 * time.Millisecond}
		if _, _, _, err := post(impatient, h.proxy.URL, inDoubtBody); err == nil {
			t.Fatal("the impatient caller got an answer")
		}
		testutil.WaitFor(t, "the access-log line", func() bool { return len(logLines(t, h.logs, "request")) == 1 })
		line := logLines(t, h.logs, "request")[0]
		if line["status"] != float64(499) || line["upstream_status"] != float64(201) || line["api_request_id"] != "api-req-1" {
			t.Errorf("status %v upstream_status %v api_request_id %v, want 499, 201, api-req-1", line["status"], line["upstream_status"], line["api_request_id"])
		}
	})
	t.Run("retry and in-doubt lines carry the request id", func(t *testing.T) {
		api := newIdemAPI(1500*time.Millisecond, true)
		h := newHarness(t, api.serve, inDoubtOpts(200*time.Millisecond, 500*time.Millisecond))
		resp, body := h.do(t, "POST", "/v1/orders", strings.NewReader(inDoubtBody), nil)
		p := assertProblem(t, resp, body, http.StatusServiceUnavailable, "in_doubt")
		id := resp.Header.Get(proxy.RequestIDHeader)
		if id == "" || p["request_id"] != id {
			t.Errorf("header id %q, problem request_id %v: want the same id", id, p["request_id"])
		}
		testutil.WaitFor(t, "the access-log line", func() bool { return len(logLines(t, h.logs, "request")) == 1 })
		access := logLines(t, h.logs, "request")[0]
		retries := logLines(t, h.logs, "retrying upstream request")
		if len(retries) == 0 {
			t.Fatal("no retry line")
		}
		for _, l := range append(retries, access) {
			if l["request_id"] != id {
				t.Errorf("line %v has request_id %v, want %s", l["msg"], l["request_id"], id)
			}
		}
		if access["upstream_status"] != float64(409) || access["status"] != float64(503) {
			t.Errorf("access status %v upstream_status %v, want 503 and the API's last 409", access["status"], access["upstream_status"])
		}
		for _, l := range retries {
			if e, _ := l["error"].(string); strings.Count(e, "no response headers within the upstream timeout") > 1 {
				t.Errorf("retry reason doubled: %q", e)
			}
		}
	})
	t.Run("a shared answer has the follower's own id", func(t *testing.T) {
		api := newIdemAPI(500*time.Millisecond, true)
		h := newHarness(t, api.serve, inDoubtOpts(2*time.Second, 5*time.Second))
		impatient := &http.Client{Timeout: 150 * time.Millisecond}
		post(impatient, h.proxy.URL, inDoubtBody)
		time.Sleep(50 * time.Millisecond)
		code, hdr, _, err := post(h.proxy.Client(), h.proxy.URL, inDoubtBody)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("retry: %d %v", code, err)
		}
		testutil.WaitFor(t, "two access-log lines", func() bool { return len(logLines(t, h.logs, "request")) == 2 })
		var own any
		for _, l := range logLines(t, h.logs, "request") {
			if l["shared_answer"] == true {
				own = l["request_id"]
			}
		}
		if got := hdr.Values(proxy.RequestIDHeader); len(got) != 1 || got[0] != own {
			t.Errorf("follower got ids %v, its log line says %v: want its own", got, own)
		}
	})
}
