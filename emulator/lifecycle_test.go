package emulator

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

// hooked starts an env with insecure webhooks allowed and mutate applied,
// registers a receiver for its key and returns both.
func hooked(t *testing.T, mutate func(*Options)) (*testEnv, <-chan delivered) {
	t.Helper()
	env := newEnv(t, func(o *Options) {
		o.AllowInsecureWebhooks = true
		if mutate != nil {
			mutate(o)
		}
	})
	rcv, ch := receiver(t, 0)
	resp, body := env.do(t, rq{method: "PUT", path: "/v1/webhooks", body: `{"url":"` + rcv.URL + `"}`})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT webhook: %d %s", resp.StatusCode, body)
	}
	return env, ch
}

// events reads n webhook deliveries, checks their signatures and returns
// their decoded envelopes in arrival order.
func events(t *testing.T, env *testEnv, ch <-chan delivered, n int) []map[string]any {
	t.Helper()
	var out []map[string]any
	for len(out) < n {
		select {
		case d := <-ch:
			verifyStripe(t, env.emu.WebhookSecret(), d.header.Get(DefaultWebhookHeader), d.body)
			out = append(out, decode(t, d.body))
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d webhook deliveries, want %d", len(out), n)
		}
	}
	return out
}

func types(evs []map[string]any) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev["type"].(string))
	}
	return out
}

func dataOf(t *testing.T, evs []map[string]any, typ string) map[string]any {
	t.Helper()
	for _, ev := range evs {
		if ev["type"] == typ {
			return ev["data"].(map[string]any)
		}
	}
	t.Fatalf("no %s event among %v", typ, types(evs))
	return nil
}

// noWebhookSince fails when a delivery beyond the first sent was made or
// is on its way.
func noWebhookSince(t *testing.T, env *testEnv, sent int, when string) {
	t.Helper()
	if n, d := env.emu.PendingWebhooks(), len(env.emu.WebhookDeliveries()); n != 0 || d != sent {
		t.Errorf("%s: %d webhooks pending and %d sent, want none beyond %d", when, n, d, sent)
	}
}

func manual(o *Options) { o.Lifecycle.Manual = true }

func TestOrderLifecycle(t *testing.T) {
	env, ch := hooked(t, manual)
	o := env.order(t, "life")
	for field, want := range map[string]any{"status": "pending", "payment_method": "credit", "service_id": nil, "invoice_id": nil, "paid_at": nil} {
		if got := o[field]; got != want {
			t.Errorf("201 order.%s: got %v, want %v", field, got, want)
		}
	}
	id := jsonID(o["id"])
	if got := decode(t, mustGet(t, env, "/v1/billing/balance"))["balance"]; got != "490.01" {
		t.Errorf("balance while pending: got %v, want 490.01 (reserved)", got)
	}
	noWebhookSince(t, env, 0, "pending order")

	// pending -> paid: order.paid and invoice.created, the service provisioning.
	if got := env.emu.Advance(); got != 1 {
		t.Fatalf("Advance ran %d steps, want 1", got)
	}
	paid := decode(t, mustGet(t, env, "/v1/orders/"+id))
	if paid["status"] != "paid" || paid["service_id"] == nil || paid["invoice_id"] == nil || paid["paid_at"] == nil {
		t.Fatalf("after payment: %v", paid)
	}
	evs := events(t, env, ch, 2)
	if got, want := types(evs), []string{"order.paid", "invoice.created"}; !slices.Equal(got, want) {
		t.Errorf("events: got %v, want %v", got, want)
	}
	if got := dataOf(t, evs, "order.paid")["status"]; got != "paid" {
		t.Errorf("order.paid data.status = %v", got)
	}
	sid := jsonID(paid["service_id"])
	svc := decode(t, mustGet(t, env, "/v1/services/"+sid))
	if svc["status"] != "provisioning" || svc["power_state"] != "stopped" {
		t.Errorf("service after payment: %v", svc)
	}
	resp, body := env.do(t, rq{method: "POST", path: "/v1/services/" + sid + "/actions", body: `{"action":"start"}`, idem: "early"})
	if p := wantProblem(t, resp, body, http.StatusBadRequest, codeValidation, ""); fieldOf(t, p) != "action" {
		t.Errorf("action on a provisioning service: %v", p)
	}

	// provisioning -> active: service.provisioned.
	if got := env.emu.Advance(); got != 1 {
		t.Fatalf("second Advance ran %d steps, want 1", got)
	}
	svc = decode(t, mustGet(t, env, "/v1/services/"+sid))
	if svc["status"] != "active" || svc["power_state"] != "running" {
		t.Errorf("service after provisioning: %v", svc)
	}
	evs = events(t, env, ch, 1)
	if got := dataOf(t, evs, "service.provisioned")["status"]; got != "active" {
		t.Errorf("service.provisioned data.status = %v", got)
	}
	if n := env.emu.PendingSteps(); n != 0 {
		t.Errorf("%d steps still pending", n)
	}
}

func TestOrderPaymentFailed(t *testing.T) {
	tests := []struct {
		card   Card
		reason string
	}{
		{CardDeclining, "card_declined"},
		{CardExpired, "card_expired"},
		{CardNone, "insufficient_credit_and_no_card"},
	}
	for _, tc := range tests {
		t.Run(string(tc.card), func(t *testing.T) {
			env, ch := hooked(t, func(o *Options) {
				manual(o)
				o.InitialBalance = -1 // zero: the card pays
				o.Card = CardValid
			})
			o := env.order(t, "card")
			if o["status"] != "pending" || o["payment_method"] != "card" {
				t.Fatalf("201: %v", o)
			}
			// The card stops working between acceptance and capture.
			if err := env.emu.SetCard("", tc.card); err != nil {
				t.Fatal(err)
			}
			env.emu.Advance()
			got := decode(t, mustGet(t, env, "/v1/orders/"+jsonID(o["id"])))
			if got["status"] != "payment_failed" || got["failure_reason"] != tc.reason || got["service_id"] != nil {
				t.Errorf("order: %v", got)
			}
			evs := events(t, env, ch, 1)
			if d := dataOf(t, evs, "order.payment_failed"); d["failure_reason"] != tc.reason {
				t.Errorf("order.payment_failed data: %v", d)
			}
			if n := env.emu.PendingSteps(); n != 0 {
				t.Errorf("a failed payment scheduled %d steps", n)
			}
			if list := decode(t, mustGet(t, env, "/v1/services"))["data"].([]any); len(list) != 0 {
				t.Errorf("a failed payment created services: %v", list)
			}
		})
	}
}

func TestCardPaysWhatCreditDoesNot(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.InitialBalance = 500; o.Card = CardValid })
	o := env.order(t, "by-card")
	if o["status"] != "paid" || o["payment_method"] != "card" {
		t.Errorf("order: %v", o)
	}
	if got := decode(t, mustGet(t, env, "/v1/billing/balance")); got["balance"] != "5.00" || got["card_on_file"] != true {
		t.Errorf("balance: %v", got)
	}
	inv := decode(t, mustGet(t, env, "/v1/billing/invoices"))["data"].([]any)[0].(map[string]any)
	if inv["payment_method"] != "card" {
		t.Errorf("invoice: %v", inv)
	}
}

// activeService places an order and runs its lifecycle to an active
// service; it returns the actions path.
func activeService(t *testing.T, env *testEnv, ch <-chan delivered) string {
	t.Helper()
	sid := ""
	o := env.order(t, "svc-"+newNonce(t)[:8])
	for range 2 {
		env.emu.Advance()
	}
	events(t, env, ch, 3)
	sid = jsonID(decode(t, mustGet(t, env, "/v1/orders/"+jsonID(o["id"])))["service_id"])
	return "/v1/services/" + sid + "/actions"
}

func TestSlowActionLifecycle(t *testing.T) {
	env, ch := hooked(t, manual)
	path := activeService(t, env, ch)
	testutil.WaitFor(t, "delivery log", func() bool { return len(env.emu.WebhookDeliveries()) == 3 })
	resp, body := env.do(t, rq{method: "POST", path: path, body: `{"action":"stop"}`, idem: "stop"})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("stop: status %d, want 202: %s", resp.StatusCode, body)
	}
	a := decode(t, body)
	svc := a["service"].(map[string]any)
	if a["status"] != "pending" || a["completed_at"] != nil || svc["power_state"] != "running" || svc["pending_action"] == nil {
		t.Errorf("pending answer: %v", a)
	}
	noWebhookSince(t, env, 3, "pending action")
	resp, body = env.do(t, rq{method: "POST", path: path, body: `{"action":"reboot"}`, idem: "busy"})
	if p := wantProblem(t, resp, body, http.StatusBadRequest, codeValidation, ""); fieldOf(t, p) != "action" {
		t.Errorf("action while another runs: %v", p)
	}

	env.emu.Advance()
	sv := decode(t, mustGet(t, env, "/v1/services/"+jsonID(a["service_id"])))
	if sv["power_state"] != "stopped" || sv["pending_action"] != nil {
		t.Errorf("service after completion: %v", sv)
	}
	done := dataOf(t, events(t, env, ch, 1), "service.action_completed")
	if done["id"] != a["id"] || done["status"] != "completed" || done["completed_at"] == nil || done["action"] != "stop" {
		t.Errorf("service.action_completed data: %v", done)
	}

	// suspend is not slow: completed inside the request, with its webhook.
	resp, body = env.do(t, rq{method: "POST", path: path, body: `{"action":"suspend"}`, idem: "suspend"})
	if resp.StatusCode != http.StatusOK || decode(t, body)["status"] != "completed" {
		t.Fatalf("suspend: %d %s", resp.StatusCode, body)
	}
	if d := dataOf(t, events(t, env, ch, 1), "service.action_completed"); d["action"] != "suspend" {
		t.Errorf("suspend event: %v", d)
	}
}

func TestInstantLifecycle(t *testing.T) {
	env, ch := hooked(t, nil)
	o := env.order(t, "instant")
	if o["status"] != "paid" || o["service_id"] == nil {
		t.Fatalf("201 with the zero Lifecycle: %v", o)
	}
	path := "/v1/services/" + jsonID(o["service_id"]) + "/actions"
	resp, body := env.do(t, rq{method: "POST", path: path, body: `{"action":"reboot"}`, idem: "r"})
	if resp.StatusCode != http.StatusOK || decode(t, body)["status"] != "completed" {
		t.Fatalf("reboot: %d %s", resp.StatusCode, body)
	}
	want := []string{"order.paid", "invoice.created", "service.provisioned", "service.action_completed"}
	if got := types(events(t, env, ch, 4)); !slices.Equal(got, want) {
		t.Errorf("events: got %v, want %v (in the order the steps happened)", got, want)
	}
	if n := env.emu.PendingSteps(); n != 0 {
		t.Errorf("%d steps pending with the zero Lifecycle", n)
	}
}

func TestLifecycleTimers(t *testing.T) {
	t.Run("long delays wait, Advance runs them", func(t *testing.T) {
		env := newEnv(t, func(o *Options) { o.Lifecycle = Lifecycle{PaymentDelay: time.Hour, ProvisionDelay: time.Hour} })
		o := env.order(t, "hour")
		if o["status"] != "pending" {
			t.Fatalf("201: %v", o)
		}
		if n := env.emu.PendingSteps(); n != 1 {
			t.Fatalf("%d steps pending, want 1", n)
		}
		env.emu.Advance()
		env.emu.Advance()
		sid := jsonID(decode(t, mustGet(t, env, "/v1/orders/"+jsonID(o["id"])))["service_id"])
		if got := decode(t, mustGet(t, env, "/v1/services/"+sid))["status"]; got != "active" {
			t.Errorf("service: %v", got)
		}
	})
	t.Run("leaving manual mode starts the waiting steps", func(t *testing.T) {
		env := newEnv(t, manual)
		id := jsonID(env.order(t, "parked")["id"])
		if err := env.emu.SetLifecycle(Lifecycle{PaymentDelay: 5 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, "the parked payment", func() bool {
			return decode(t, mustGet(t, env, "/v1/orders/"+id))["status"] == "paid"
		})
		if err := env.emu.SetLifecycle(Lifecycle{ActionDelay: -1}); err == nil {
			t.Error("SetLifecycle accepted a negative delay")
		}
	})
	t.Run("short delays run by themselves", func(t *testing.T) {
		env, ch := hooked(t, func(o *Options) {
			o.Lifecycle = Lifecycle{PaymentDelay: 5 * time.Millisecond, ProvisionDelay: 5 * time.Millisecond, ActionDelay: 5 * time.Millisecond}
		})
		o := env.order(t, "timers")
		if got := types(events(t, env, ch, 3)); !slices.Equal(got, []string{"order.paid", "invoice.created", "service.provisioned"}) {
			t.Errorf("events: %v", got)
		}
		sid := jsonID(decode(t, mustGet(t, env, "/v1/orders/"+jsonID(o["id"])))["service_id"])
		resp, body := env.do(t, rq{method: "POST", path: "/v1/services/" + sid + "/actions", body: `{"action":"stop"}`, idem: "t-stop"})
		if resp.StatusCode/100 != 2 {
			t.Fatalf("stop: %d %s", resp.StatusCode, body)
		}
		events(t, env, ch, 1)
		if got := decode(t, mustGet(t, env, "/v1/services/"+sid))["power_state"]; got != "stopped" {
			t.Errorf("power_state after the action's timer: %v", got)
		}
	})
}

func TestReset(t *testing.T) {
	env, _ := hooked(t, manual)
	env.order(t, "before")
	if _, err := env.emu.RotateSecret(env.key, ""); err != nil {
		t.Fatal(err)
	}
	env.emu.SetFaults(Faults{FailCount: 5})
	env.emu.SetCard("", CardDeclining)
	env.emu.Reset()

	if n, p := env.emu.OrderCount(), env.emu.PendingSteps(); n != 0 || p != 0 {
		t.Errorf("after Reset: %d orders, %d steps", n, p)
	}
	if f := env.emu.Faults(); f != (Faults{}) {
		t.Errorf("faults after Reset: %+v", f)
	}
	// The original secret works again, the webhook URL is gone, ids restart.
	if got := decode(t, mustGet(t, env, "/v1/webhooks"))["url"]; got != nil {
		t.Errorf("webhook URL after Reset: %v", got)
	}
	if got := decode(t, mustGet(t, env, "/v1/me"))["account"].(map[string]any); got["balance"] != "500.00" || got["card_on_file"] != false {
		t.Errorf("account after Reset: %v", got)
	}
	if got := env.order(t, "before")["id"]; got != 1001.0 {
		t.Errorf("first order after Reset: id %v, want 1001 (and the old Idempotency-Key forgotten)", got)
	}
}
