package emulator

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"-listen", "127.0.0.1:0"}, func(string) string { return "" }, &out, nil)
	}()
	addrRe := regexp.MustCompile(`listening on http://(\S+)`)
	var addr string
	testutil.WaitFor(t, "listening line", func() bool {
		if m := addrRe.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			return true
		}
		return false
	})
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok && strings.HasPrefix(sc.Text(), "export ") {
			vars[k] = v
		}
	}
	if !keyPattern.MatchString(vars["KH_KEY"]) || len(vars["KH_SECRET"]) < 32 || vars["KH_WEBHOOK_SECRET"] == "" {
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
	if resp.StatusCode != 200 {
		t.Errorf("/v1/me: status %d body %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
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
