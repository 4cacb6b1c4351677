package emulator

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

// ctl sends one control request and returns the status and decoded body
// (nil unless JSON).
func ctl(t *testing.T, env *testEnv, method, path, body string) (int, any) {
	t.Helper()
	req, err := http.NewRequest(method, env.srv.URL+ControlPath+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := env.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if got := resp.Header.Get(HeaderEmulator); got != "1" {
		t.Errorf("%s %s: no %s header", method, path, HeaderEmulator)
	}
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s %s: error Content-Type %q", method, path, ct)
		}
		if p := decode(t, raw); p["type"] != ControlProblemType {
			t.Errorf("%s %s: problem type %v", method, path, p["type"])
		}
		return resp.StatusCode, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
	}
	return resp.StatusCode, v
}

func ctlOK(t *testing.T, env *testEnv, method, path, body string) map[string]any {
	t.Helper()
	status, v := ctl(t, env, method, path, body)
	if status != http.StatusOK {
		t.Fatalf("%s %s %s: status %d", method, path, body, status)
	}
	m, _ := v.(map[string]any)
	return m
}

func TestControlFaults(t *testing.T) {
	env := newEnv(t, nil)
	got := ctlOK(t, env, "PUT", "faults", `{"fail_count":1,"fail_status":503,"retry_after":"2s","clock_offset":"-1m"}`)
	if got["fail_count"] != 1.0 || got["retry_after"] != "2s" || got["clock_offset"] != "-1m0s" || got["delay"] != "0s" {
		t.Errorf("PUT faults answer: %v", got)
	}
	// Control requests are not faulted: the count is still there.
	if got := ctlOK(t, env, "GET", "faults", ""); got["fail_count"] != 1.0 {
		t.Errorf("GET faults: %v", got)
	}
	resp, body := env.do(t, rq{path: "/v1/health", unsigned: true})
	wantProblem(t, resp, body, http.StatusServiceUnavailable, codeInjected, "")
	if f := env.emu.Faults(); f.FailCount != 0 {
		t.Errorf("FailCount after one request: %d", f.FailCount)
	}
	for _, bad := range []string{`{"fail_status":404,"fail_count":1}`, `{"fail_cuont":1}`, `{"delay":5}`, `{"delay":"soon"}`, `nope`} {
		if status, _ := ctl(t, env, "PUT", "faults", bad); status != http.StatusBadRequest {
			t.Errorf("PUT faults %s: status %d, want 400", bad, status)
		}
	}
	if f := env.emu.Faults(); f.ClockOffset == 0 {
		t.Error("a refused PUT changed the faults")
	}
}

func TestControlKeys(t *testing.T) {
	env := newEnv(t, nil)
	if got := ctlOK(t, env, "POST", "keys/"+env.key+"/lock", ""); got["locked"] != true {
		t.Errorf("lock answer: %v", got)
	}
	resp, body := env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "unknown_or_locked_key")
	ctlOK(t, env, "POST", "keys/"+env.key+"/unlock", "")
	mustGet(t, env, "/v1/me")

	rot := ctlOK(t, env, "POST", "keys/"+env.key+"/rotate-secret", "")
	fresh, _ := rot["secret"].(string)
	if fresh == "" || fresh == env.secret {
		t.Fatalf("rotate-secret answer: %v", rot)
	}
	resp, body = env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "signature_mismatch")
	env.secret = fresh
	mustGet(t, env, "/v1/me")
	if got := ctlOK(t, env, "POST", "keys/"+env.key+"/rotate-secret", `{"secret":"picked"}`); got["secret"] != "picked" {
		t.Errorf("rotate to a chosen secret: %v", got)
	}
	env.secret = "picked"

	ctlOK(t, env, "PUT", "keys/"+env.key+"/scopes", `{"scopes":["read:products"]}`)
	resp, body = env.do(t, rq{path: "/v1/billing/balance"})
	wantProblem(t, resp, body, http.StatusForbidden, codeForbidden, "missing_scope")
	if got := ctlOK(t, env, "PUT", "keys/"+env.key+"/scopes", `{"scopes":"all"}`); len(got["scopes"].([]any)) != len(AllScopes()) {
		t.Errorf("scopes all: %v", got)
	}
	mustGet(t, env, "/v1/billing/balance")

	ctlOK(t, env, "PUT", "keys/"+env.key+"/allow-ips", `{"allow_ips":["192.0.2.0/24"]}`)
	resp, body = env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "ip_not_allowed")
	ctlOK(t, env, "PUT", "keys/"+env.key+"/allow-ips", `{"allow_ips":[]}`)
	mustGet(t, env, "/v1/me")

	tests := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "keys/" + padKey("NOPE") + "/lock", "", 404},
		{"POST", "keys/" + padKey("NOPE") + "/rotate-secret", "", 404},
		{"PUT", "keys/" + env.key + "/scopes", `{"scopes":["root"]}`, 400},
		{"PUT", "keys/" + env.key + "/scopes", `{"scopes":5}`, 400},
		{"PUT", "keys/" + env.key + "/allow-ips", `{"allow_ips":["nowhere"]}`, 400},
	}
	for _, tc := range tests {
		if status, _ := ctl(t, env, tc.method, tc.path, tc.body); status != tc.status {
			t.Errorf("%s %s %s: status %d, want %d", tc.method, tc.path, tc.body, status, tc.status)
		}
	}
}

func TestControlLifecycleCardAndReset(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.InitialBalance = 500 }) // 5.00: below product 42's 9.99
	if got := ctlOK(t, env, "PUT", "card", `{"card":"valid"}`); got["account"] != DefaultAccount || got["card"] != "valid" {
		t.Errorf("PUT card: %v", got)
	}
	got := ctlOK(t, env, "PUT", "lifecycle", `{"payment_delay":"1h","provision_delay":"2s","manual":true}`)
	if got["payment_delay"] != "1h0m0s" || got["manual"] != true || got["action_delay"] != "0s" {
		t.Errorf("PUT lifecycle: %v", got)
	}
	o := env.order(t, "ctl")
	if o["status"] != "pending" || o["payment_method"] != "card" {
		t.Fatalf("order: %v", o)
	}
	if got := ctlOK(t, env, "POST", "advance", ""); got["ran"] != 1.0 || got["pending"] != 1.0 {
		t.Errorf("advance: %v (want the payment run, the provisioning waiting)", got)
	}
	if st := decode(t, mustGet(t, env, "/v1/orders/"+jsonID(o["id"])))["status"]; st != "paid" {
		t.Errorf("order after advance: %v", st)
	}
	if status, _ := ctl(t, env, "PUT", "lifecycle", `{"action_delay":"-1s"}`); status != 400 {
		t.Errorf("negative delay: status %d", status)
	}

	ctlOK(t, env, "PUT", "card", `{"card":"expired","account":"`+DefaultAccount+`"}`)
	resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "expired"})
	wantProblem(t, resp, body, http.StatusPaymentRequired, codePayment, "card_expired")
	if status, _ := ctl(t, env, "PUT", "card", `{"card":"stolen"}`); status != 400 {
		t.Errorf("bad card: status %d", status)
	}

	state := ctlOK(t, env, "GET", "state", "")
	if state["orders"] != 1.0 || state["pending_steps"] != 1.0 || len(state["keys"].([]any)) != 1 {
		t.Errorf("state: %v", state)
	}
	if got := ctlOK(t, env, "POST", "reset", ""); got["reset"] != true {
		t.Errorf("reset: %v", got)
	}
	state = ctlOK(t, env, "GET", "state", "")
	acct := state["accounts"].([]any)[0].(map[string]any)
	if state["orders"] != 0.0 || state["pending_steps"] != 0.0 || acct["balance"] != "5.00" || acct["card"] != "none" || state["lifecycle"].(map[string]any)["manual"] != false {
		t.Errorf("state after reset: %v", state)
	}
}

func TestControlWebhooks(t *testing.T) {
	env, ch := hooked(t, nil)
	env.order(t, "ctl-hook")
	events(t, env, ch, 3)
	testutil.WaitFor(t, "delivery log", func() bool { return len(env.emu.WebhookDeliveries()) == 3 })
	status, v := ctl(t, env, "GET", "webhooks", "")
	list, _ := v.([]any)
	if status != 200 || len(list) != 3 {
		t.Fatalf("GET webhooks: %d %v", status, v)
	}
	first := list[0].(map[string]any)
	if first["delivered"] != true || first["body"].(map[string]any)["id"] != first["event_id"] {
		t.Errorf("delivery: %v", first)
	}
	if got := ctlOK(t, env, "POST", "webhooks/redeliver", `{"event_id":"`+first["event_id"].(string)+`"}`); got["queued"] != 1.0 {
		t.Errorf("redeliver: %v", got)
	}
	if ev := events(t, env, ch, 1)[0]; ev["id"] != first["event_id"] {
		t.Errorf("redelivered %v", ev["id"])
	}
	if status, _ := ctl(t, env, "POST", "webhooks/redeliver", `{"event_id":"evt_NONE"}`); status != 404 {
		t.Errorf("redeliver unknown: %d", status)
	}
	ctlOK(t, env, "PUT", "faults", `{"duplicate_webhooks":3}`)
	env.order(t, "ctl-dup")
	events(t, env, ch, 6)
}

func TestControlRouting(t *testing.T) {
	env := newEnv(t, nil)
	if status, _ := ctl(t, env, "GET", "nothing", ""); status != 404 {
		t.Errorf("unknown route: %d", status)
	}
	req, _ := http.NewRequest("DELETE", env.srv.URL+ControlPath+"faults", nil)
	resp, err := env.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, PUT" {
		t.Errorf("DELETE faults: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if got := env.emu.Requests(); len(got) != 0 {
		t.Errorf("control requests were counted as API requests: %v", got)
	}

	off := newEnv(t, func(o *Options) { o.NoControl = true })
	resp, err = http.Post(off.srv.URL+ControlPath+"reset", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantProblem(t, resp, body, http.StatusNotFound, codeNotFound, "")

	if _, err := New(Options{Keys: []Key{{ID: padKey("A"), Secret: "s"}}, BasePath: "/__emulator/api"}); err == nil {
		t.Error("a base path under the control endpoint was accepted")
	}
}

// The after-commit faults, the random faults, the in-progress mode and the
// order list work from the control endpoint, for tests in any language.
func TestControlSoakFaults(t *testing.T) {
	env := newEnv(t, nil)
	got := ctlOK(t, env, "PUT", "faults", `{"fail_after_commit":1,"slow_after_commit":"1.5s","slow_after_commit_count":2,
		"random":{"unavailable":0.1,"rate_limited":0.05,"drop_after_commit":0.02,"fail_after_commit":0.03,
		"slow_after_commit":0.04,"slow_delay":"3s","clock_step":"200s","clock_every":"20s","clock_max":"400s","seed":9}}`)
	random, _ := got["random"].(map[string]any)
	if got["fail_after_commit"] != 1.0 || got["slow_after_commit"] != "1.5s" || got["slow_after_commit_count"] != 2.0 ||
		random["unavailable"] != 0.1 || random["slow_delay"] != "3s" || random["clock_max"] != "6m40s" || random["seed"] != 9.0 {
		t.Errorf("PUT faults answer: %v", got)
	}
	want := Faults{FailAfterCommit: 1, SlowAfterCommit: 1500 * time.Millisecond, SlowAfterCommitCount: 2,
		Random: RandomFaults{Unavailable: 0.1, RateLimited: 0.05, DropAfterCommit: 0.02, FailAfterCommit: 0.03,
			SlowAfterCommit: 0.04, SlowDelay: 3 * time.Second, ClockStep: 200 * time.Second, ClockEvery: 20 * time.Second,
			ClockMax: 400 * time.Second, Seed: 9}}
	if got := env.emu.Faults(); got != want {
		t.Errorf("Faults() = %+v, want %+v", got, want)
	}
	for _, bad := range []string{`{"random":{"unavailable":2}}`, `{"random":{"slow_after_commit":0.1}}`,
		`{"random":{"clock_step":"1m"}}`, `{"random":{"drop":0.1}}`, `{"fail_after_commit":-1}`} {
		if status, _ := ctl(t, env, "PUT", "faults", bad); status != http.StatusBadRequest {
			t.Errorf("PUT faults %s: status %d, want 400", bad, status)
		}
	}

	ctlOK(t, env, "PUT", "faults", `{"fail_after_commit":1}`)
	resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", idem: "ctl-key",
		body: `{"product_id":42,"billing_cycle":"monthly","label":"from-control"}`})
	wantProblem(t, resp, body, http.StatusInternalServerError, codeInjected, "injected_fault_after_commit")
	orders, _ := ctlOK(t, env, "GET", "orders", "")["orders"].([]any)
	if len(orders) != 1 {
		t.Fatalf("GET orders: %v", orders)
	}
	if o := orders[0].(map[string]any); o["label"] != "from-control" || o["idempotency_key"] != "ctl-key" || o["id"] != 1001.0 {
		t.Errorf("GET orders: %v", o)
	}
	st := ctlOK(t, env, "GET", "state", "")
	if inj, _ := st["injected_faults"].(map[string]any); inj["fail_after_commit"] != 1.0 {
		t.Errorf("state injected_faults: %v", st["injected_faults"])
	}

	if got := ctlOK(t, env, "GET", "in-progress", ""); got["in_progress"] != "409" {
		t.Errorf("GET in-progress: %v", got)
	}
	if got := ctlOK(t, env, "PUT", "in-progress", `{"in_progress":"replay"}`); got["in_progress"] != "replay" {
		t.Errorf("PUT in-progress: %v", got)
	}
	if got := env.emu.InProgress(); got != InProgressReplay {
		t.Errorf("InProgress() = %q after PUT", got)
	}
	if status, _ := ctl(t, env, "PUT", "in-progress", `{"in_progress":"later"}`); status != http.StatusBadRequest {
		t.Errorf("PUT in-progress later: status %d, want 400", status)
	}
	if st := ctlOK(t, env, "GET", "state", ""); st["in_progress"] != "replay" {
		t.Errorf("state in_progress: %v", st["in_progress"])
	}
	ctlOK(t, env, "POST", "reset", "")
	if got := env.emu.InProgress(); got != InProgressConflict {
		t.Errorf("InProgress() after reset = %q, want the initial 409", got)
	}
	if got := env.emu.InjectedFaults(); len(got) != 0 {
		t.Errorf("InjectedFaults after reset: %v", got)
	}
}
