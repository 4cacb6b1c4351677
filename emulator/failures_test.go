package emulator

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

func TestCardFailures(t *testing.T) {
	tests := []struct {
		card   Card
		status int
		reason string
	}{
		{CardNone, http.StatusPaymentRequired, "insufficient_credit_and_no_card"},
		{CardDeclining, http.StatusPaymentRequired, "card_declined"},
		{CardExpired, http.StatusPaymentRequired, "card_expired"},
		{CardValid, http.StatusCreated, ""},
	}
	for _, tc := range tests {
		t.Run(string(tc.card), func(t *testing.T) {
			env := newEnv(t, func(o *Options) { o.InitialBalance = 500; o.Card = tc.card })
			resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "c"})
			if tc.status != http.StatusCreated {
				wantProblem(t, resp, body, tc.status, codePayment, tc.reason)
				if n := env.emu.OrderCount(); n != 0 {
					t.Errorf("%d orders after a 402", n)
				}
			} else if resp.StatusCode != tc.status {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			me := decode(t, mustGet(t, env, "/v1/me"))["account"].(map[string]any)
			if got, want := me["card_on_file"], tc.card != CardNone; got != want {
				t.Errorf("card_on_file: got %v, want %v", got, want)
			}
		})
	}
	// Credit first: a declining card does not matter while credit covers the order.
	env := newEnv(t, func(o *Options) { o.Card = CardDeclining })
	if o := env.order(t, "credit"); o["payment_method"] != "credit" {
		t.Errorf("order: %v", o)
	}
}

func TestLockKeyAtRunTime(t *testing.T) {
	env := newEnv(t, nil)
	mustGet(t, env, "/v1/me")
	if err := env.emu.LockKey(env.key, true); err != nil {
		t.Fatal(err)
	}
	resp, body := env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "unknown_or_locked_key")
	if err := env.emu.LockKey(env.key, false); err != nil {
		t.Fatal(err)
	}
	mustGet(t, env, "/v1/me")
	if err := env.emu.LockKey(padKey("NOPE"), true); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("LockKey(unknown) = %v, want ErrUnknownKey", err)
	}
}

func TestRotateSecretAtRunTime(t *testing.T) {
	env := newEnv(t, nil)
	old := env.secret
	mustGet(t, env, "/v1/me")
	fresh, err := env.emu.RotateSecret(env.key, "")
	if err != nil || fresh == "" || fresh == old {
		t.Fatalf("RotateSecret = %q, %v", fresh, err)
	}
	// The old secret fails at once (spec §1.5: no grace period).
	resp, body := env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "signature_mismatch")
	if resp, body := env.do(t, rq{path: "/v1/me", secret: fresh}); resp.StatusCode != http.StatusOK {
		t.Errorf("new secret: %d %s", resp.StatusCode, body)
	}
	if got, err := env.emu.RotateSecret(env.key, "chosen-secret"); err != nil || got != "chosen-secret" {
		t.Errorf("RotateSecret(chosen) = %q, %v", got, err)
	}
	if _, err := env.emu.RotateSecret(padKey("NOPE"), ""); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("RotateSecret(unknown) = %v, want ErrUnknownKey", err)
	}
}

func TestIPWhitelist(t *testing.T) {
	elsewhere := netip.MustParsePrefix("10.0.0.0/8")
	env := newEnv(t, func(o *Options) { o.Keys[0].AllowIPs = []netip.Prefix{elsewhere} })
	nonce := newNonce(t)
	resp, body := env.do(t, rq{path: "/v1/me", nonce: nonce})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "ip_not_allowed")
	// Only a correctly signed request learns about the whitelist.
	resp, body = env.do(t, rq{path: "/v1/me", secret: "wrong"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "signature_mismatch")

	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if err := env.emu.SetAllowIPs(env.key, loopback); err != nil {
		t.Fatal(err)
	}
	// The refused request burned no nonce.
	if resp, body := env.do(t, rq{path: "/v1/me", nonce: nonce}); resp.StatusCode != http.StatusOK {
		t.Fatalf("from an allowed address: %d %s", resp.StatusCode, body)
	}
	wl := decode(t, mustGet(t, env, "/v1/me"))["key"].(map[string]any)["ip_whitelist"].([]any)
	if len(wl) != 2 || wl[0] != "127.0.0.0/8" {
		t.Errorf("ip_whitelist: %v", wl)
	}
	if err := env.emu.SetAllowIPs(env.key, nil); err != nil {
		t.Fatal(err)
	}
	mustGet(t, env, "/v1/me")
}

func TestDefaultScopesAreReadOnly(t *testing.T) {
	ro := Key{ID: padKey("NEW"), Secret: "new-key-secret"} // Scopes nil: a new key
	env := newEnv(t, func(o *Options) { o.Keys = append(o.Keys, ro) })
	sid := jsonID(env.order(t, "for-reading")["service_id"])
	checkScopes(t, env, ro, []scopeCase{
		{"GET", "/v1/products", "", "", 200},
		{"GET", "/v1/orders/1001", "", "", 200},
		{"GET", "/v1/services", "", "", 200},
		{"GET", "/v1/billing/balance", "", "", 200},
		{"GET", "/v1/webhooks", "", "", 200},
		{"GET", "/v1/services/" + sid + "/credentials", "", "", 403},
		{"POST", "/v1/orders", testutil.OrderBody, "w1", 403},
		{"POST", "/v1/services/" + sid + "/actions", `{"action":"stop"}`, "w2", 403},
		{"PUT", "/v1/webhooks", `{"url":null}`, "", 403},
	})
	// Restricted at run time to one scope.
	if err := env.emu.SetScopes(ro.ID, []string{ScopeWriteOrders}); err != nil {
		t.Fatal(err)
	}
	checkScopes(t, env, ro, []scopeCase{
		{"GET", "/v1/products", "", "", 403},
		{"POST", "/v1/orders", testutil.OrderBody, "w3", 201},
	})
	if err := env.emu.SetScopes(ro.ID, []string{"write:everything"}); err == nil {
		t.Error("SetScopes accepted an unknown scope")
	}
}

func TestParseScopes(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"all", AllScopes(), false},
		{"read-only", ReadOnlyScopes(), false},
		{"none", []string{}, false},
		{"read:products, write:orders,read:products", []string{ScopeReadProducts, ScopeWriteOrders}, false},
		{"read:products,admin", nil, true},
		{"", nil, true},
		{" , ", nil, true},
	}
	for _, tc := range tests {
		got, err := ParseScopes(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("ParseScopes(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if slices.Contains(ReadOnlyScopes(), ScopeReadCredentials) {
		t.Error("read-only scopes include the sensitive read:credentials")
	}
	for _, s := range ReadOnlyScopes() {
		if s[:5] != "read:" {
			t.Errorf("read-only scope %q", s)
		}
	}
}

func TestParseAllowIPs(t *testing.T) {
	got, err := ParseAllowIPs("10.1.2.3/8, 192.0.2.7,2001:db8::/32,::ffff:198.51.100.1")
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "198.51.100.1/32"}
	if err != nil || len(got) != len(want) {
		t.Fatalf("ParseAllowIPs = %v, %v", got, err)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d: got %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.1/x"} {
		if _, err := ParseAllowIPs(bad); err == nil {
			t.Errorf("ParseAllowIPs(%q): want error", bad)
		}
	}
	if got, err := ParseAllowIPs(""); err != nil || len(got) != 0 {
		t.Errorf(`ParseAllowIPs("") = %v, %v`, got, err)
	}
}

func TestParseCardAndRetries(t *testing.T) {
	for in, want := range map[string]Card{"": CardNone, "none": CardNone, "valid": CardValid, "declining": CardDeclining, "expired": CardExpired} {
		if got, err := ParseCard(in); err != nil || got != want {
			t.Errorf("ParseCard(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseCard("stolen"); err == nil {
		t.Error(`ParseCard("stolen"): want error`)
	}
	tests := []struct {
		in   string
		want []time.Duration
	}{
		{"production", ProductionWebhookRetries()},
		{"fast", FastWebhookRetries()},
		{"none", []time.Duration{}},
		{"1s, 10s,1m", []time.Duration{time.Second, 10 * time.Second, time.Minute}},
	}
	for _, tc := range tests {
		if got, err := ParseWebhookRetries(tc.in); err != nil || !slices.Equal(got, tc.want) || got == nil {
			t.Errorf("ParseWebhookRetries(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, bad := range []string{"", "soon", "1s,-1s", "1s,,2s"} {
		if _, err := ParseWebhookRetries(bad); err == nil {
			t.Errorf("ParseWebhookRetries(%q): want error", bad)
		}
	}
	for name, s := range map[string][]time.Duration{"production": ProductionWebhookRetries(), "fast": FastWebhookRetries()} {
		for i := 1; i < len(s); i++ {
			if s[i] <= s[i-1] {
				t.Errorf("%s schedule does not grow: %v", name, s)
			}
		}
	}
}

func TestEmulatorHeaderEverywhere(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Faults.FailCount = 1 })
	for _, r := range []rq{
		{path: "/v1/health", unsigned: true}, // the injected 503
		{path: "/v1/health", unsigned: true},
		{path: "/v1/me"},
		{path: "/v1/me", unsigned: true},
		{path: "/v1/nope"},
	} {
		resp, _ := env.do(t, r)
		if got := resp.Header.Get(HeaderEmulator); got != "1" {
			t.Errorf("%s (status %d): %s = %q, want 1", r.path, resp.StatusCode, HeaderEmulator, got)
		}
	}
	for _, p := range []string{"/elsewhere", ControlPath + "state"} {
		resp, err := http.Get(env.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get(HeaderEmulator); got != "1" {
			t.Errorf("%s: %s = %q, want 1", p, HeaderEmulator, got)
		}
	}
}
