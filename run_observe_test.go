package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"khproxy/admin"
	"khproxy/emulator"
	"khproxy/internal/testutil"
	"khproxy/proxy"
)

// TestSeriesAtZeroOnFirstScrape: every series an alert is written against
// exists, at 0, on the first scrape, before anything happened, so that
// rate() and increase() see the first error; and the exposition passes
// client_golang's promlint.
func TestSeriesAtZeroOnFirstScrape(t *testing.T) {
	a := startAPI(t, true) // the health poll never answers: nothing has happened
	r := startRun(t, "KH_KEY="+a.key, "KH_SECRET="+a.secret, "KH_UPSTREAM="+a.upstream(),
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_SHUTDOWN_DELAY=0s")
	t.Cleanup(a.releaseHealth)
	got := r.scrape(t)
	var want []string
	for _, k := range proxy.Kinds() {
		want = append(want, fmt.Sprintf(`khproxy_errors_total{kind=%q}`, k))
	}
	for _, reason := range proxy.AttemptReasons() {
		want = append(want, fmt.Sprintf(`khproxy_upstream_attempts_total{reason=%q}`, reason))
	}
	for _, reason := range proxy.AuthReasons() {
		want = append(want, fmt.Sprintf(`khproxy_upstream_auth_failures_total{reason=%q}`, reason))
	}
	for _, result := range proxy.SecretRereadResults() {
		want = append(want, fmt.Sprintf(`khproxy_secret_rereads_total{result=%q}`, result))
	}
	for _, code := range []string{"200", "401", "429", "500", "502", "503", "504"} {
		want = append(want, fmt.Sprintf(`khproxy_upstream_responses_total{code=%q}`, code))
	}
	want = append(want, "khproxy_upstream_up", "khproxy_shutdown_requests_in_doubt_total",
		"khproxy_upstream_attempt_duration_seconds_count", `khproxy_secret_reloads_total{result="error"}`,
		"khproxy_clock_offset_seconds")
	for _, k := range want {
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("%s = %v (present: %v), want 0 on the first scrape", k, v, ok)
		}
	}
	if t.Failed() {
		t.Logf("first scrape: %v", got)
	}
}

// TestMetricsLint runs client_golang's promlint over the whole exposition,
// Redis metrics included.
func TestMetricsLint(t *testing.T) {
	a := startAPI(t, false)
	r := startRun(t, "KH_KEY="+a.key, "KH_SECRET="+a.secret, "KH_UPSTREAM="+a.upstream(),
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_SHUTDOWN_DELAY=0s",
		"KH_REDIS_URL=redis://127.0.0.1:1/0", // nothing listens: the Redis series exist all the same
		"KH_WEBHOOK_LISTEN=127.0.0.1:0", "KH_WEBHOOK_SECRET=whsec_test", "KH_WEBHOOK_FORWARD=http://127.0.0.1:9/hooks")
	r.send(t, "GET", "/v1/me", "", 200)
	resp, err := http.Get(r.admin + admin.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	problems, err := promlint.New(resp.Body).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestBurstOf503sCounted: a burst of the API's 503s is counted from 0, by
// code, per attempt, with each retry's reason, and each attempt timed.
func TestBurstOf503sCounted(t *testing.T) {
	a := startAPI(t, false)
	r := startRun(t, "KH_KEY="+a.key, "KH_SECRET="+a.secret, "KH_UPSTREAM="+a.upstream(),
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_SHUTDOWN_DELAY=0s", "KH_RETRY_MAX=3")
	before := r.scrape(t)
	if v, ok := before[`khproxy_upstream_responses_total{code="503"}`]; !ok || v != 0 {
		t.Fatalf("503s before the burst = %v (present: %v), want 0", v, ok)
	}
	if err := a.emu.SetFaults(emulator.Faults{FailCount: 12, FailStatus: 503}); err != nil {
		t.Fatal(err)
	}
	// Three GETs, each tried four times (RetryMax 3): twelve 503s, the last
	// of each passed to the caller.
	for range 3 {
		r.send(t, "GET", "/v1/me", "", 503)
	}
	var got map[string]float64
	testutil.WaitFor(t, "3 requests counted", func() bool {
		got = r.scrape(t)
		return got[`khproxy_requests_total{code="503",method="GET",route="/v1/me"}`] == 3
	})
	want := map[string]float64{
		`khproxy_upstream_responses_total{code="503"}`:          12,
		`khproxy_upstream_attempts_total{reason="first"}`:       3,
		`khproxy_upstream_attempts_total{reason="unavailable"}`: 9,
		`khproxy_upstream_attempt_duration_seconds_count`:       12,
		`khproxy_errors_total{kind="upstream_unreachable"}`:     0,
	}
	for k, w := range want {
		if g := got[k]; g != w {
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
	// Each 503 that reached the caller is a WARN line with its status.
	testutil.WaitFor(t, "the access log", func() bool { return strings.Count(r.logs.String(), `"msg":"request"`) >= 3 })
	for line := range strings.SplitSeq(r.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"request"`) && strings.Contains(line, `"status":503`) && !strings.Contains(line, `"level":"WARN"`) {
			t.Errorf("an upstream 503 that reached the caller is not WARN: %s", line)
		}
	}
}

// TestRotationWithoutAnOutage: the API's secret is rotated and the file
// swapped as the kubelet does; a request sent right after the swap (before
// the file is looked at again on its own) gets 401 signature_mismatch,
// which makes khproxy re-read the file at once and retry once with the new
// secret: the caller sees 200. A 401 with the file unchanged passes
// through, as a WARN naming its reason.
func TestRotationWithoutAnOutage(t *testing.T) {
	a := startAPI(t, false)
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "secret", a.secret)
	r := startRun(t, "KH_KEY="+a.key, "KH_SECRET_FILE="+secretFile, "KH_UPSTREAM="+a.upstream(),
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_SHUTDOWN_DELAY=0s", "KH_RETRY_MAX=0")
	r.send(t, "GET", "/v1/me", "", 200) // the file was just looked at: the next second uses what is cached

	swap := func(secret string) {
		t.Helper()
		writeFile(t, dir, "secret.new", secret)
		if err := os.Rename(filepath.Join(dir, "secret.new"), secretFile); err != nil {
			t.Fatal(err)
		}
	}
	newSecret, err := a.emu.RotateSecret(a.key, "")
	if err != nil {
		t.Fatal(err)
	}
	swap(newSecret)
	r.send(t, "GET", "/v1/me", "", 200)
	r.send(t, "POST", "/v1/orders", testutil.OrderBody, 201)

	// Rotated at the API only: the file holds the rejected secret.
	if _, err := a.emu.RotateSecret(a.key, ""); err != nil {
		t.Fatal(err)
	}
	r.send(t, "GET", "/v1/me", "", 401)

	var got map[string]float64
	testutil.WaitFor(t, "4 requests counted", func() bool {
		got = r.scrape(t)
		return got[`khproxy_requests_total{code="401",method="GET",route="/v1/me"}`] == 1
	})
	want := map[string]float64{
		`khproxy_secret_rereads_total{result="changed"}`:                    1,
		`khproxy_secret_rereads_total{result="unchanged"}`:                  1,
		`khproxy_secret_rereads_total{result="error"}`:                      0,
		`khproxy_upstream_attempts_total{reason="secret_rotated"}`:          1,
		`khproxy_upstream_auth_failures_total{reason="signature_mismatch"}`: 2,
		`khproxy_upstream_responses_total{code="401"}`:                      2,
	}
	for k, w := range want {
		if g := got[k]; g != w {
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
	testutil.WaitFor(t, "the 401's access log line", func() bool {
		return logLine(r.logs, "request", "status", float64(401)) != nil
	})
	l := logLine(r.logs, "request", "status", float64(401))
	if l["level"] != "WARN" || l["auth_reason"] != "signature_mismatch" {
		t.Errorf("the 401 that reached the caller is logged as %v with auth_reason %v, want WARN and signature_mismatch", l["level"], l["auth_reason"])
	}
}
