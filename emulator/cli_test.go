package emulator

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"khproxy/emulator/apiauth"
	"khproxy/internal/testutil"
)

func TestRun(t *testing.T) {
	addr, out := startRun(t)
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok && strings.HasPrefix(sc.Text(), "export ") {
			vars[k] = v
		}
	}
	if !apiauth.KeyIDPattern.MatchString(vars["KH_KEY"]) || len(vars["KH_SECRET"]) < 32 || vars["KH_WEBHOOK_SECRET"] == "" {
		t.Fatalf("generated credentials not printed: %q", out.String())
	}
	base := "http://" + addr + DefaultBasePath
	resp, err := http.Get(base + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("health: status %d", resp.StatusCode)
	}
	// The printed credentials work.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := newNonce(t)
	req, _ := http.NewRequest("GET", base+"/v1/me", nil)
	req.Header.Set(HeaderKey, vars["KH_KEY"])
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderSignature, testutil.Signature(vars["KH_SECRET"], "GET", "/v1/me", ts, nonce, nil))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(HeaderEmulator) != "1" {
		t.Errorf("/v1/me: status %d, %s %q, body %s", resp.StatusCode, HeaderEmulator, resp.Header.Get(HeaderEmulator), body)
	}
	// The generated key is read-only (spec §4.2), and the output says so.
	var me struct{ Key struct{ Scopes []string } }
	json.Unmarshal(body, &me)
	if !slices.Equal(me.Key.Scopes, slices.Sorted(slices.Values(ReadOnlyScopes()))) {
		t.Errorf("generated key's scopes: %v, want read-only", me.Key.Scopes)
	}
	// The other realistic CLI defaults: lifecycle delays, production retries.
	resp, err = http.Get("http://" + addr + ControlPath + "state")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Lifecycle map[string]any
		Retries   []string `json:"webhook_retries"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Lifecycle["provision_delay"] != "2s" || st.Lifecycle["payment_delay"] != "1s" || st.Lifecycle["action_delay"] != "2s" || st.Lifecycle["manual"] != false {
		t.Errorf("default lifecycle: %v", st.Lifecycle)
	}
	if len(st.Retries) != len(ProductionWebhookRetries()) || st.Retries[0] != "1m0s" {
		t.Errorf("default webhook retries: %v", st.Retries)
	}
	if !strings.Contains(out.String(), "read-only") || !strings.Contains(out.String(), ControlPath) {
		t.Errorf("output does not name the read-only scopes and the control endpoint:\n%s", out.String())
	}
}

func TestRunFlags(t *testing.T) {
	key := padKey("CLI")
	env := map[string]string{"KH_KEY": key, "KH_SECRET": "from-env-secret"}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		name    string
		args    []string
		getenv  func(string) string
		wantErr string
	}{
		{"help", []string{"-h"}, nil, ""},
		{"unknown flag", []string{"-bogus"}, nil, "bogus"},
		{"extra args", []string{"-listen", "127.0.0.1:0", "extra"}, nil, "unexpected"},
		{"key without secret", []string{"-key", key}, nil, "both"},
		{"malformed key", []string{"-key", "kh_live_x", "-secret", "s"}, nil, "key id"},
		{"bad balance", []string{"-balance", "12.345"}, nil, "balance"},
		{"bad fail status", []string{"-fail-count", "1", "-fail-status", "404"}, nil, "FailStatus"},
		{"negative burst", []string{"-burst", "-1"}, nil, "negative"},
		{"bad scope", []string{"-scopes", "read:everything"}, nil, "scope"},
		{"bad listen", []string{"-listen", "256.0.0.1:99999"}, getenv, "listen"},
		{"bad base path", []string{"-base-path", "nope/"}, getenv, "base path"},
		{"bad signed path", []string{"-signed-path", "prefix"}, getenv, "signed path"},
		{"unknown scope list", []string{"-scopes", "read:products,write:everything"}, getenv, "-scopes"},
		{"bad allow-ip", []string{"-allow-ip", "10.0.0.0/99"}, getenv, "-allow-ip"},
		{"bad card", []string{"-card", "gold"}, getenv, "-card"},
		{"bad webhook retries", []string{"-webhook-retries", "often"}, getenv, "-webhook-retries"},
		{"negative provision delay", []string{"-provision-delay", "-2s"}, getenv, "negative"},
		{"negative duplicates", []string{"-duplicate-webhooks", "-1"}, getenv, "negative"},
		{"bad in-progress", []string{"-in-progress", "wait"}, getenv, "-in-progress"},
		{"negative fail after commit", []string{"-fail-after-commit", "-1"}, getenv, "negative"},
		{"random rate above 1", []string{"-random-unavailable", "1.5"}, getenv, "rates"},
		{"random slow without delay", []string{"-random-slow-after-commit", "0.1"}, getenv, "SlowDelay"},
		{"clock walk without every", []string{"-clock-walk-step", "200s", "-clock-walk-max", "400s"}, getenv, "clock walk"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var out testutil.SyncBuffer
			err := Run(ctx, tc.args, tc.getenv, &out, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if !strings.Contains(out.String(), "-listen") {
					t.Errorf("usage not printed: %q", out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err: got %v, want containing %q", err, tc.wantErr)
			}
			if strings.Contains(out.String(), "from-env-secret") {
				t.Error("secret printed")
			}
		})
	}
}

func TestParseMoney(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{{"500", 50000, true}, {"12.5", 1250, true}, {"0.07", 7, true}, {"0", 0, true}, {"-1", 0, false}, {"1.234", 0, false}, {"", 0, false}}
	for _, tc := range tests {
		got, err := parseMoney(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMoney(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestNewValidation(t *testing.T) {
	good := Key{ID: padKey("A"), Secret: "s"}
	tests := []struct {
		name string
		opts Options
	}{
		{"no keys", Options{}},
		{"bad key id", Options{Keys: []Key{{ID: "kh_live_a", Secret: "s"}}}},
		{"empty secret", Options{Keys: []Key{{ID: padKey("A")}}}},
		{"duplicate", Options{Keys: []Key{good, good}}},
		{"unknown scope", Options{Keys: []Key{{ID: padKey("A"), Secret: "s", Scopes: []string{"admin"}}}}},
		{"bad base", Options{Keys: []Key{good}, BasePath: "api"}},
		{"bad currency", Options{Keys: []Key{good}, Currency: "euro"}},
		{"bad header", Options{Keys: []Key{good}, WebhookHeader: "X Sig"}},
		{"negative rate", Options{Keys: []Key{good}, RateLimit: RateLimit{PerMinute: -1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if e, err := New(tc.opts); err == nil {
				e.Close()
				t.Fatal("want error")
			}
		})
	}
	e, err := New(Options{Keys: []Key{good}, BasePath: "/"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.BasePath() != "" || e.WebhookSecret() == "" {
		t.Errorf("BasePath %q, WebhookSecret empty=%v", e.BasePath(), e.WebhookSecret() == "")
	}
}

// startRun runs Run with args until the test ends and returns its
// address and output.
func startRun(t *testing.T, args ...string) (string, *testutil.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &testutil.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, append([]string{"-listen", "127.0.0.1:0"}, args...), nil, out, nil) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not stop")
		}
	})
	addrRe := regexp.MustCompile(`listening on http://(\S+)`)
	var addr string
	testutil.WaitFor(t, "listening line", func() bool {
		if m := addrRe.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			return true
		}
		return false
	})
	return addr, out
}

func TestRunFlagsReachTheEmulator(t *testing.T) {
	addr, _ := startRun(t, "-scopes", "write:orders,read:orders", "-card", "expired", "-balance", "0",
		"-allow-ip", "127.0.0.1,::1", "-payment-delay", "3s", "-provision-delay", "0", "-action-delay", "250ms",
		"-manual-lifecycle", "-duplicate-webhooks", "2", "-webhook-retries", "1s,1m",
		"-fail-after-commit", "3", "-slow-after-commit", "4s", "-slow-after-commit-count", "5", "-in-progress", "replay",
		"-random-unavailable", "0.01", "-random-rate-limited", "0.02", "-random-drop-after-commit", "0.03",
		"-random-fail-after-commit", "0.04", "-random-slow-after-commit", "0.05", "-random-slow-delay", "6s",
		"-clock-walk-step", "200s", "-clock-walk-every", "20s", "-clock-walk-max", "400s", "-random-seed", "11")
	resp, err := http.Get("http://" + addr + ControlPath + "state")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Keys []struct {
			Scopes   []string `json:"scopes"`
			AllowIPs []string `json:"allow_ips"`
		}
		Accounts   []struct{ Balance, Card string }
		Lifecycle  map[string]any
		Faults     map[string]any
		Retries    []string `json:"webhook_retries"`
		InProgress string   `json:"in_progress"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || len(st.Keys) != 1 || len(st.Accounts) != 1 {
		t.Fatalf("state: %v %+v", err, st)
	}
	if got, want := st.Keys[0].Scopes, []string{"read:orders", "write:orders"}; !slices.Equal(got, want) {
		t.Errorf("scopes: got %v, want %v", got, want)
	}
	if got, want := st.Keys[0].AllowIPs, []string{"127.0.0.1/32", "::1/128"}; !slices.Equal(got, want) {
		t.Errorf("allow_ips: got %v, want %v", got, want)
	}
	if a := st.Accounts[0]; a.Balance != "0.00" || a.Card != "expired" {
		t.Errorf("account: %+v", a)
	}
	want := map[string]any{"payment_delay": "3s", "provision_delay": "0s", "action_delay": "250ms", "manual": true}
	for k, v := range want {
		if st.Lifecycle[k] != v {
			t.Errorf("lifecycle.%s: got %v, want %v", k, st.Lifecycle[k], v)
		}
	}
	if !slices.Equal(st.Retries, []string{"1s", "1m0s"}) {
		t.Errorf("webhook_retries: %v", st.Retries)
	}
	wantFaults := map[string]any{"duplicate_webhooks": 2.0, "fail_after_commit": 3.0, "slow_after_commit": "4s",
		"slow_after_commit_count": 5.0}
	for k, v := range wantFaults {
		if st.Faults[k] != v {
			t.Errorf("faults.%s: got %v, want %v", k, st.Faults[k], v)
		}
	}
	wantRandom := map[string]any{"unavailable": 0.01, "rate_limited": 0.02, "drop_after_commit": 0.03,
		"fail_after_commit": 0.04, "slow_after_commit": 0.05, "slow_delay": "6s", "clock_step": "3m20s",
		"clock_every": "20s", "clock_max": "6m40s", "seed": 11.0}
	random, _ := st.Faults["random"].(map[string]any)
	for k, v := range wantRandom {
		if random[k] != v {
			t.Errorf("faults.random.%s: got %v, want %v", k, random[k], v)
		}
	}
	if st.InProgress != "replay" {
		t.Errorf("in_progress: got %q, want replay", st.InProgress)
	}

	off, _ := startRun(t, "-no-control")
	resp, err = http.Get("http://" + off + ControlPath + "state")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("-no-control: control answered %d", resp.StatusCode)
	}
}
