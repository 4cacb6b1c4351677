package emulator

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"

	"khproxy/internal/testutil"
)

func TestOrderFlow(t *testing.T) {
	env := newEnv(t, nil)
	resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "flow"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d, body %s", resp.StatusCode, body)
	}
	o := decode(t, body)
	for field, want := range map[string]any{"status": "paid", "product_id": 42.0, "billing_cycle": "monthly", "amount": "9.99", "currency": "EUR"} {
		if got := o[field]; got != want {
			t.Errorf("order.%s: got %v, want %v", field, got, want)
		}
	}
	for _, f := range []string{"id", "service_id", "invoice_id", "created_at"} {
		if o[f] == nil {
			t.Errorf("order.%s missing", f)
		}
	}
	id, sid := jsonID(o["id"]), jsonID(o["service_id"])
	if got, want := resp.Header.Get("Location"), DefaultBasePath+"/v1/orders/"+id; got != want {
		t.Errorf("Location: got %q, want %q", got, want)
	}
	if got := decode(t, mustGet(t, env, "/v1/orders/"+id)); got["id"] != o["id"] {
		t.Errorf("GET order: %v", got)
	}
	svc := decode(t, mustGet(t, env, "/v1/services/"+sid))
	if svc["status"] != "active" || svc["power_state"] != "running" {
		t.Errorf("service: %v", svc)
	}
	cred := decode(t, mustGet(t, env, "/v1/services/"+sid+"/credentials"))
	if cred["username"] != "root" || cred["password"] == "" {
		t.Errorf("credentials: %v", cred)
	}
	bal := decode(t, mustGet(t, env, "/v1/billing/balance"))
	if got, want := bal["balance"], "490.01"; got != want {
		t.Errorf("balance: got %v, want %v", got, want)
	}
	orders := env.emu.Orders()
	if len(orders) != 1 || orders[0].IdempotencyKey != "flow" || orders[0].Amount != 999 {
		t.Errorf("Orders(): %+v", orders)
	}
	if got := env.emu.Requests()["POST /v1/orders"]; got != 1 {
		t.Errorf("Requests()[POST /v1/orders]: got %d, want 1", got)
	}
}

func TestOrderValidation(t *testing.T) {
	env := newEnv(t, nil)
	tests := []struct{ name, body, field string }{
		{"empty", "", "body"},
		{"bad JSON", `{"product_id":42,`, "body"},
		{"array", `[1]`, "body"},
		{"two objects", testutil.OrderBody + testutil.OrderBody, "body"},
		{"unknown field", `{"product_id":42,"billing_cycle":"monthly","coupon":"x"}`, "coupon"},
		{"missing product", `{"billing_cycle":"monthly"}`, "product_id"},
		{"string product", `{"product_id":"42","billing_cycle":"monthly"}`, "product_id"},
		{"unknown product", `{"product_id":99999,"billing_cycle":"monthly"}`, "product_id"},
		{"bad cycle", `{"product_id":42,"billing_cycle":"weekly"}`, "billing_cycle"},
		{"bad option", `{"product_id":42,"billing_cycle":"monthly","config":{"os":"temple-os"}}`, "config.os"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", body: tc.body, idem: "v" + strconv.Itoa(i)})
			p := wantProblem(t, resp, body, http.StatusBadRequest, codeValidation, "")
			if got := fieldOf(t, p); got != tc.field {
				t.Errorf("field: got %q, want %q", got, tc.field)
			}
		})
	}
	if got := env.emu.OrderCount(); got != 0 {
		t.Errorf("orders: got %d, want 0", got)
	}
	resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", idem: "cfg",
		body: `{"product_id":42,"billing_cycle":"quarterly","config":{"os":"rocky-9","location":"nbg"}}`})
	if resp.StatusCode != http.StatusCreated || decode(t, body)["amount"] != "28.47" {
		t.Errorf("config order: status %d body %s", resp.StatusCode, body)
	}
}

func TestPaymentRequired(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.InitialBalance = 1500 })
	env.order(t, "o1")
	resp, body := env.do(t, rq{method: "POST", path: "/v1/orders", body: testutil.OrderBody, idem: "o2"})
	wantProblem(t, resp, body, http.StatusPaymentRequired, codePayment, "insufficient_credit_and_no_card")
	if got, want := env.emu.OrderCount(), 1; got != want {
		t.Errorf("orders: got %d, want %d", got, want)
	}
	if got := decode(t, mustGet(t, env, "/v1/billing/balance"))["balance"]; got != "5.01" {
		t.Errorf("balance: got %v, want 5.01", got)
	}
}

func TestPagination(t *testing.T) {
	env := newEnv(t, nil)
	for i := 0; i < 5; i++ {
		env.order(t, "p"+strconv.Itoa(i))
	}
	for _, base := range []string{"/v1/services", "/v1/billing/invoices"} {
		tests := []struct {
			query           string
			items, page, pp int
		}{
			{"", 5, 1, 20},
			{"?per_page=2", 2, 1, 2},
			{"?per_page=2&page=3", 1, 3, 2},
			{"?page=4&per_page=2", 0, 4, 2},
		}
		for _, tc := range tests {
			t.Run(base+tc.query, func(t *testing.T) {
				m := decode(t, mustGet(t, env, base+tc.query))
				data := m["data"].([]any)
				pg := m["pagination"].(map[string]any)
				if len(data) != tc.items || pg["page"] != float64(tc.page) || pg["per_page"] != float64(tc.pp) || pg["total"] != 5.0 {
					t.Errorf("got %d items, pagination %v", len(data), pg)
				}
				if want := float64((5 + tc.pp - 1) / tc.pp); pg["total_pages"] != want {
					t.Errorf("total_pages: got %v, want %v", pg["total_pages"], want)
				}
			})
		}
		for _, q := range []string{"?per_page=0", "?per_page=101", "?page=0", "?page=x", "?page=1&page=2"} {
			t.Run(base+q, func(t *testing.T) {
				resp, body := env.do(t, rq{path: base + q})
				wantProblem(t, resp, body, http.StatusBadRequest, codeValidation, "")
			})
		}
	}
	// Ordering: first page starts with the first service.
	first := decode(t, mustGet(t, env, "/v1/services?per_page=1"))["data"].([]any)[0].(map[string]any)
	if got, want := first["id"], float64(env.emu.Orders()[0].ServiceID); got != want {
		t.Errorf("first service: got %v, want %v", got, want)
	}
}

func TestServiceActions(t *testing.T) {
	env := newEnv(t, nil)
	path := "/v1/services/" + jsonID(env.order(t, "svc")["service_id"]) + "/actions"
	steps := []struct {
		action       string
		status       int
		state, power string
	}{
		{"stop", 200, "active", "stopped"},
		{"stop", 200, "active", "stopped"},
		{"reboot", 400, "", ""},
		{"start", 200, "active", "running"},
		{"reboot", 200, "active", "running"},
		{"reinstall", 200, "active", "running"},
		{"suspend", 200, "suspended", "stopped"},
		{"start", 400, "", ""},
		{"suspend", 400, "", ""},
		{"unsuspend", 200, "active", "running"},
		{"unsuspend", 400, "", ""},
		{"explode", 400, "", ""},
		{"terminate", 200, "terminated", "stopped"},
		{"start", 400, "", ""},
		{"terminate", 400, "", ""},
	}
	for i, st := range steps {
		resp, body := env.do(t, rq{method: "POST", path: path, body: `{"action":"` + st.action + `"}`, idem: "a" + strconv.Itoa(i)})
		if st.status != 200 {
			p := wantProblem(t, resp, body, st.status, codeValidation, "")
			if got := fieldOf(t, p); got != "action" {
				t.Errorf("step %d (%s): field %q, want action", i, st.action, got)
			}
			continue
		}
		if resp.StatusCode != 200 {
			t.Fatalf("step %d (%s): status %d body %s", i, st.action, resp.StatusCode, body)
		}
		svc := decode(t, body)["service"].(map[string]any)
		if svc["status"] != st.state || svc["power_state"] != st.power {
			t.Errorf("step %d (%s): status %v power %v, want %s %s", i, st.action, svc["status"], svc["power_state"], st.state, st.power)
		}
	}
	resp, body := env.do(t, rq{method: "POST", path: "/v1/services/424242/actions", body: `{"action":"start"}`, idem: "nf"})
	wantProblem(t, resp, body, http.StatusNotFound, codeNotFound, "")
}

func TestInvoicePDF(t *testing.T) {
	env := newEnv(t, nil)
	iid := jsonID(env.order(t, "pdf")["invoice_id"])
	list := decode(t, mustGet(t, env, "/v1/billing/invoices"))["data"].([]any)
	inv := list[0].(map[string]any)
	if got, want := inv["pdf_url"], DefaultBasePath+"/v1/billing/invoices/"+iid+"/pdf"; got != want {
		t.Errorf("pdf_url: got %v, want %v", got, want)
	}
	resp, body := env.do(t, rq{path: "/v1/billing/invoices/" + iid + "/pdf"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Content-Type"), "application/pdf"; got != want {
		t.Errorf("Content-Type: got %q, want %q", got, want)
	}
	if !bytes.HasPrefix(body, []byte("%PDF-1.")) || !bytes.HasSuffix(bytes.TrimSpace(body), []byte("%%EOF")) {
		t.Errorf("not a PDF: %q", body)
	}
	// startxref must point at the xref table.
	i := bytes.LastIndex(body, []byte("startxref\n"))
	rest := body[i+len("startxref\n"):]
	off, err := strconv.Atoi(string(rest[:bytes.IndexByte(rest, '\n')]))
	if err != nil || !bytes.HasPrefix(body[off:], []byte("xref\n")) {
		t.Errorf("startxref %d does not point at xref (%v)", off, err)
	}
	// Each xref entry points at "N 0 obj".
	for n := 1; n <= 5; n++ {
		entry := body[off+len("xref\n0 6\n")+20*n:]
		o, _ := strconv.Atoi(string(entry[:10]))
		if !bytes.HasPrefix(body[o:], []byte(strconv.Itoa(n)+" 0 obj")) {
			t.Errorf("xref entry %d points at %q", n, body[o:o+8])
		}
	}
}

func TestCatalogAndMe(t *testing.T) {
	env := newEnv(t, nil)
	list := decode(t, mustGet(t, env, "/v1/products"))["data"].([]any)
	if len(list) < 3 {
		t.Errorf("products: %d", len(list))
	}
	p := decode(t, mustGet(t, env, "/v1/products/42"))
	if p["family"] != "kvm" || len(p["config_options"].([]any)) == 0 || p["prices"].(map[string]any)["monthly"] != "9.99" {
		t.Errorf("product 42: %v", p)
	}
	resp, body := env.do(t, rq{path: "/v1/products/4242"})
	wantProblem(t, resp, body, http.StatusNotFound, codeNotFound, "")
	me := decode(t, mustGet(t, env, "/v1/me"))
	if me["key"].(map[string]any)["id"] != env.key || me["account"].(map[string]any)["id"] != DefaultAccount {
		t.Errorf("me: %v", me)
	}
}
