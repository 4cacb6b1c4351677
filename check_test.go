package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/internal/testutil"
)

// checkCase is one `khproxy check` scenario against the emulator.
type checkCase struct {
	name     string
	key      func(k *emulator.Key)                                // what the API knows of the key; nil: the key as configured
	faults   emulator.Faults                                      // e.g. a clock offset
	emuPath  string                                               // the emulator's -signed-path ("": v1)
	signed   string                                               // KH_SIGNED_PATH ("": unset)
	requests int                                                  // the most requests check may send (0: 2)
	tls      bool                                                 // serve with a certificate nobody trusts
	env      func(t testing.TB, upstream, secret string) []string // nil: the good configuration
	wantFail bool
	want     []string // regexps, each matching a line of the output
}

// TestCheck runs `khproxy check` against the emulator through real sockets:
// the emulator, not khproxy's signer, judges the signature.
func TestCheck(t *testing.T) {
	tests := []checkCase{
		{name: "all pass", want: []string{
			`^✓ configuration: key kh_live_\w+, secret from KH_SECRET, upstream http://127\.0\.0\.1:\d+/cp/kh_reseller_api$`,
			`^✓ API reachable: GET http://127\.0\.0\.1:\d+/cp/kh_reseller_api/v1/health answered 200 in \S+; plain http, no TLS$`,
			`^✓ clock: within [01]s of the API's clock$`,
			`^✓ signed GET /v1/me: accepted, account acct_default, key scopes: read:billing .*write:orders`,
		}},
		{name: "wrong secret", key: func(k *emulator.Key) { k.Secret = "the-current-secret" }, wantFail: true, requests: 3, want: []string{
			`^✓ API reachable: `,
			`^✗ signed GET /v1/me: 401 signature_mismatch, with KH_SIGNED_PATH=v1 and with full$`,
			`^    fix: the secret in KH_SECRET is wrong, or the key's secret was rotated`,
		}},
		{name: "wrong secret, full path", signed: "full", emuPath: emulator.SignedPathFull, key: func(k *emulator.Key) { k.Secret = "the-current-secret" }, wantFail: true, requests: 3, want: []string{
			`^✗ signed GET /v1/me: 401 signature_mismatch, with KH_SIGNED_PATH=full and with v1$`,
			`^    fix: the secret in KH_SECRET is wrong`,
		}},
		{name: "API verifies the full path", emuPath: emulator.SignedPathFull, wantFail: true, requests: 3, want: []string{
			`^✗ signed GET /v1/me: 401 signature_mismatch with KH_SIGNED_PATH=v1; signed over the other path form \(KH_SIGNED_PATH=full\) it is accepted$`,
			`^    fix: set KH_SIGNED_PATH=full: the API verifies the full path, base path included`,
		}},
		{name: "API verifies /v1 but full is set", signed: "full", wantFail: true, requests: 3, want: []string{
			`^✗ signed GET /v1/me: 401 signature_mismatch with KH_SIGNED_PATH=full; signed over the other path form \(KH_SIGNED_PATH=v1\) it is accepted$`,
			`^    fix: set KH_SIGNED_PATH=v1: the API verifies the path from /v1 on`,
		}},
		{name: "full path on both sides", signed: "full", emuPath: emulator.SignedPathFull, want: []string{
			`^✓ signed GET /v1/me: accepted`,
		}},
		{name: "rotated secret in a file", key: func(k *emulator.Key) { k.Secret = "the-rotated-secret" }, wantFail: true, requests: 3,
			env: func(t testing.TB, upstream, secret string) []string {
				path := filepath.Join(t.TempDir(), "secret")
				if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				return []string{"KH_SECRET_FILE=" + path, "KH_UPSTREAM=" + upstream}
			},
			want: []string{
				`^✓ configuration: key kh_live_\w+, secret from KH_SECRET_FILE /`,
				`^✗ signed GET /v1/me: 401 signature_mismatch, with KH_SIGNED_PATH=v1 and with full$`,
				`^    fix: the secret in KH_SECRET_FILE is wrong, or the key's secret was rotated`,
			}},
		{name: "revoked key", key: func(k *emulator.Key) { k.Locked = true }, wantFail: true, want: []string{
			`^✗ signed GET /v1/me: 401 unknown_or_locked_key$`,
			`^    fix: the API does not know key kh_live_\w+ or it is revoked or locked`,
		}},
		{name: "clock two minutes slow", faults: emulator.Faults{ClockOffset: 2 * time.Minute}, want: []string{
			`^! clock: this machine is (1m59s|2m0s|2m1s) behind the API's clock \(the API accepts ±300s\)$`,
			`^    fix: synchronise this machine's clock with NTP`,
			`^✓ signed GET /v1/me: accepted`,
		}},
		{name: "clock seven minutes fast", faults: emulator.Faults{ClockOffset: -7 * time.Minute}, wantFail: true, want: []string{
			`^✗ clock: this machine is (6m59s|7m0s|7m1s) ahead of the API's clock`,
			`^✗ signed GET /v1/me: 401 timestamp_out_of_window$`,
			`^    fix: this machine's clock is more than 300s off the API's: synchronise it with NTP`,
		}},
		{name: "IP not on the whitelist", wantFail: true,
			key: func(k *emulator.Key) { k.AllowIPs = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")} },
			want: []string{
				`^✗ signed GET /v1/me: 401 ip_not_allowed$`,
				`^    fix: add this machine's egress IP to the key's IP whitelist in the customer portal \(it connected from 127\.0\.0\.1;`,
			}},
		{name: "upstream without the base path", wantFail: true,
			env: func(t testing.TB, upstream, secret string) []string {
				return []string{"KH_SECRET=" + secret, "KH_UPSTREAM=" + strings.TrimSuffix(upstream, emulator.DefaultBasePath)}
			},
			want: []string{
				`^✗ API reachable: GET http://127\.0\.0\.1:\d+/v1/health answered 404, want 200$`,
				`^    fix: KH_UPSTREAM must be the API base, like https://www\.kernelhost\.com/cp/kh_reseller_api, without /v1$`,
				`^- clock: not checked`,
				`^- signed GET /v1/me: not checked`,
			}},
		{name: "untrusted certificate", tls: true, wantFail: true, want: []string{
			`^✗ API reachable: GET https://127\.0\.0\.1:\d+/cp/kh_reseller_api/v1/health: TLS certificate not verified: .*certificate`,
			`^    fix: if a TLS-inspecting proxy or firewall is in the way, add its CA certificate`,
		}},
		{name: "unreachable", wantFail: true,
			env: func(t testing.TB, upstream, secret string) []string {
				return []string{"KH_SECRET=" + secret, "KH_UPSTREAM=http://" + closedAddr(t) + emulator.DefaultBasePath}
			},
			want: []string{
				`^✗ API reachable: GET http://127\.0\.0\.1:\d+/cp/kh_reseller_api/v1/health: cannot connect: .*refused`,
				`^    fix: check that 127\.0\.0\.1:\d+ is right in KH_UPSTREAM and that firewalls`,
			}},
		{name: "upstream ending in /v1", wantFail: true,
			env: func(t testing.TB, upstream, secret string) []string {
				return []string{"KH_SECRET=" + secret, "KH_UPSTREAM=" + upstream + "/v1"}
			},
			want: []string{
				`^✗ configuration: KH_UPSTREAM: http://127\.0\.0\.1:\d+/cp/kh_reseller_api/v1 ends in /v1, .*; set KH_UPSTREAM=http://127\.0\.0\.1:\d+/cp/kh_reseller_api$`,
			}},
		{name: "no secret", wantFail: true,
			env: func(t testing.TB, upstream, secret string) []string { return []string{"KH_UPSTREAM=" + upstream} },
			want: []string{
				`^✗ configuration: KH_SECRET: required`,
				`^    fix: correct the variables this names`,
				`^- API reachable: not checked: no usable configuration$`,
			}},
		{name: "unreadable secret file", wantFail: true,
			env: func(t testing.TB, upstream, secret string) []string {
				return []string{"KH_SECRET_FILE=" + filepath.Join(t.TempDir(), "missing"), "KH_UPSTREAM=" + upstream}
			},
			want: []string{`^✗ configuration: KH_SECRET_FILE: `}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testCheck(t, tt) })
	}
}

func testCheck(t *testing.T, tt checkCase) {
	// The credentials khproxy is given: a case may change the API's side.
	var key, secret string
	emu, _, _ := emulatortest.New(t, func(o *emulator.Options) {
		key, secret = o.Keys[0].ID, o.Keys[0].Secret
		if tt.key != nil {
			tt.key(&o.Keys[0])
		}
		o.Faults = tt.faults
		o.SignedPath = tt.emuPath
	})
	srv := httptest.NewUnstartedServer(emu)
	if tt.tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	defer srv.Close()

	upstream := srv.URL + emulator.DefaultBasePath
	env := []string{"KH_SECRET=" + secret, "KH_UPSTREAM=" + upstream}
	if tt.env != nil {
		env = tt.env(t, upstream, secret)
	}
	env = append(env, "KH_KEY="+key)
	if tt.signed != "" {
		env = append(env, "KH_SIGNED_PATH="+tt.signed)
	}
	var out strings.Builder
	err := run(context.Background(), []string{"check"}, env, &out, io.Discard)
	if got := err != nil; got != tt.wantFail {
		t.Errorf("check failed = %v (%v), want %v\n%s", got, err, tt.wantFail, out.String())
	}
	if err != nil && (!errors.Is(err, errCheckFailed) || exitCode(err) != 1) {
		t.Errorf("error %v: want errCheckFailed, exit status 1", err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, w := range tt.want {
		re := regexp.MustCompile(w)
		if !containsMatch(lines, re) {
			t.Errorf("no line matches %s\noutput:\n%s", w, out.String())
		}
	}
	checkShape(t, lines)

	reqs := 0
	for _, n := range emu.Requests() {
		reqs += n
	}
	most := max(tt.requests, 2)
	if reqs > most || emu.OrderCount() != 0 {
		t.Errorf("check sent %d requests (%v) and placed %d orders; want at most %d and none", reqs, emu.Requests(), emu.OrderCount(), most)
	}
}

// checkShape checks that every check printed exactly one line, in order,
// and that each line that did not pass is followed by a fix (configuration
// warnings excepted).
func checkShape(t *testing.T, lines []string) {
	t.Helper()
	status := regexp.MustCompile(`^([✓!✗-]) ([^:]+): `)
	var names []string
	for i, line := range lines {
		if strings.HasPrefix(line, "    fix: ") {
			continue
		}
		m := status.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %q is neither a check nor a fix", line)
			continue
		}
		if m[1] == "!" && m[2] == "configuration" {
			continue
		}
		names = append(names, m[2])
		if (m[1] == "✗" || m[1] == "!") && (i+1 == len(lines) || !strings.HasPrefix(lines[i+1], "    fix: ")) {
			t.Errorf("%q has no fix line after it", line)
		}
	}
	want := []string{"configuration", "API reachable", "clock", "signed GET /v1/me"}
	if strings.Join(names, "|") != strings.Join(want, "|") {
		t.Errorf("checks printed: %q, want %q", names, want)
	}
}

func containsMatch(lines []string, re *regexp.Regexp) bool {
	for _, l := range lines {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCheckRefusesArguments(t *testing.T) {
	err := run(context.Background(), []string{"check", "now"}, nil, io.Discard, io.Discard)
	if !errors.Is(err, errUsage) {
		t.Errorf("check with an argument: %v, want a usage error", err)
	}
}

// TestCheckWithTheEmulatorsExports starts `khproxy emulator`, takes the
// export lines of its banner as the whole environment, as a user's eval
// would, and runs `khproxy check`: it passes, so the banner's KH_UPSTREAM is
// one khproxy accepts.
// With -signed-path full the banner's exports include KH_SIGNED_PATH=full.
func TestCheckWithTheEmulatorsExports(t *testing.T) {
	for _, mode := range []string{"v1", "full"} {
		t.Run(mode, func(t *testing.T) { testCheckWithExports(t, "-signed-path", mode) })
	}
}

func testCheckWithExports(t *testing.T, flags ...string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	banner := &testutil.SyncBuffer{}
	errc := make(chan error, 1)
	args := append([]string{"emulator", "-listen", "127.0.0.1:0"}, flags...)
	go func() { errc <- run(ctx, args, nil, banner, io.Discard) }()
	testutil.WaitFor(t, "the emulator's KH_UPSTREAM line", func() bool { return strings.Contains(banner.String(), "export KH_UPSTREAM=") })
	var env []string
	for line := range strings.SplitSeq(banner.String(), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			kv, _, _ = strings.Cut(kv, " ") // drop a trailing comment
			env = append(env, kv)
		}
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"check"}, env, &out, io.Discard); err != nil {
		t.Errorf("check with the emulator's exports %q: %v\n%s", env, err, out.String())
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("emulator: %v", err)
	}
}
