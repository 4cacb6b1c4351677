package emulator

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"khproxy/internal/testutil"
)

// TestControlNewKeyAndTenantIsolation creates a second account's key over
// the control endpoint, as a test in any language would, and checks tenant
// isolation (spec §4.5): each account sees its own resources, another
// account's are 404; keys of one account share them; nonces are per key.
func TestControlNewKeyAndTenantIsolation(t *testing.T) {
	env := newEnv(t, nil)
	a := env.order(t, "order-a") // acct_default's
	aID := int64(a["id"].(float64))

	status, v := ctl(t, env, "POST", "keys", `{"account":"acct_b","scopes":"all","allow_ips":["127.0.0.1/32","::1"]}`)
	b, _ := v.(map[string]any)
	if status != http.StatusCreated || b["account"] != "acct_b" || !keyPattern(b["id"]) || b["secret"] == "" || b["secret"] == nil {
		t.Fatalf("POST keys: %d %v", status, b)
	}
	if ips := fmt.Sprint(b["allow_ips"]); !strings.Contains(ips, "127.0.0.1/32") {
		t.Errorf("allow_ips: %v", ips)
	}
	bKey, bSecret := b["id"].(string), b["secret"].(string)
	asB := func(r rq) rq { r.key, r.secret = bKey, bSecret; return r }

	resp, body := env.do(t, asB(rq{path: "/v1/me"}))
	if resp.StatusCode != http.StatusOK || decode(t, body)["account"].(map[string]any)["id"] != "acct_b" {
		t.Fatalf("GET /v1/me as acct_b: %d %s", resp.StatusCode, body)
	}
	// Another account's order, service and invoice: 404 not_found.
	for _, path := range []string{fmt.Sprintf("/v1/orders/%d", aID), "/v1/services/5001", "/v1/billing/invoices/9001/pdf"} {
		resp, body := env.do(t, asB(rq{path: path}))
		wantProblem(t, resp, body, http.StatusNotFound, codeNotFound, "")
	}
	resp, body = env.do(t, asB(rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "order-a"}))
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(HeaderReplayed) != "" {
		t.Fatalf("acct_b's order with acct_default's Idempotency-Key: %d %s; want a new order (keys are per API key)", resp.StatusCode, body)
	}
	bOrder := int64(decode(t, body)["id"].(float64))
	resp, body = env.do(t, rq{path: fmt.Sprintf("/v1/orders/%d", bOrder)})
	wantProblem(t, resp, body, http.StatusNotFound, codeNotFound, "")

	// A second key of acct_b, read-only by default (spec §4.2), sees
	// acct_b's order; the same nonce on two keys is not a replay.
	status, v = ctl(t, env, "POST", "keys", `{"account":"acct_b"}`)
	b2, _ := v.(map[string]any)
	if status != http.StatusCreated || strings.Contains(fmt.Sprint(b2["scopes"]), "write:") {
		t.Fatalf("second key: %d %v; want read-only scopes", status, b2)
	}
	nonce := newNonce(t)
	for _, r := range []rq{asB(rq{path: fmt.Sprintf("/v1/orders/%d", bOrder), nonce: nonce}),
		{key: b2["id"].(string), secret: b2["secret"].(string), path: fmt.Sprintf("/v1/orders/%d", bOrder), nonce: nonce}} {
		if resp, body := env.do(t, r); resp.StatusCode != http.StatusOK {
			t.Errorf("GET acct_b's order as %s: %d %s", r.key, resp.StatusCode, body)
		}
	}
	resp, body = env.do(t, rq{key: b2["id"].(string), secret: b2["secret"].(string), method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "x"})
	wantProblem(t, resp, body, http.StatusForbidden, codeForbidden, "missing_scope")

	for _, bad := range []string{`{"account":"no spaces"}`, `{"scopes":"read:everything"}`, `{"allow_ips":["10.0.0.0/99"]}`, `{"acount":"typo"}`} {
		if status, _ := ctl(t, env, "POST", "keys", bad); status != http.StatusBadRequest {
			t.Errorf("POST keys %s: %d, want 400", bad, status)
		}
	}
	// Reset removes keys made at run time.
	ctlOK(t, env, "POST", "reset", "")
	resp, body = env.do(t, asB(rq{path: "/v1/me"}))
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "unknown_or_locked_key")
}

func keyPattern(v any) bool {
	s, _ := v.(string)
	return len(s) == 40 && strings.HasPrefix(s, "kh_live_")
}

// TestControlClientNotFound: a control call makes the documented 402
// reason client_not_found happen for one account, and undoes it.
func TestControlClientNotFound(t *testing.T) {
	env := newEnv(t, nil)
	got := ctlOK(t, env, "PUT", "accounts/"+DefaultAccount, `{"client_not_found":true}`)
	if got["client_not_found"] != true || got["id"] != DefaultAccount {
		t.Errorf("PUT accounts: %v", got)
	}
	resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "lost-client"})
	p := wantProblem(t, resp, body, http.StatusPaymentRequired, codePayment, "client_not_found")
	if _, marked := p["emulator"]; marked {
		t.Errorf("client_not_found is documented (spec §6), yet marked: %v", p)
	}
	if env.emu.OrderCount() != 0 {
		t.Errorf("an order was placed")
	}
	if resp, body := env.do(t, rq{path: "/v1/billing/balance"}); resp.StatusCode != http.StatusOK {
		t.Errorf("balance while the client is missing: %d %s", resp.StatusCode, body)
	}
	ctlOK(t, env, "PUT", "accounts/"+DefaultAccount, `{"client_not_found":false}`)
	env.order(t, "client-back")

	if status, _ := ctl(t, env, "PUT", "accounts/acct_nobody", `{"client_not_found":true}`); status != http.StatusNotFound {
		t.Errorf("unknown account: %d, want 404", status)
	}
	if status, _ := ctl(t, env, "PUT", "accounts/"+DefaultAccount, `{}`); status != http.StatusBadRequest {
		t.Errorf("no field: %d, want 400", status)
	}
}
