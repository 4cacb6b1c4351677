package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"khproxy/problem"
)

const (
	defaultPerPage = 20
	maxPerPage     = 100
)

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ---- views ----

func (e *Emulator) productView(p *product) map[string]any {
	prices := map[string]string{}
	for c, v := range p.Prices {
		prices[c] = money(v)
	}
	opts := p.Options
	if opts == nil {
		opts = []configOption{}
	}
	return map[string]any{
		"id": p.ID, "name": p.Name, "family": p.Family, "description": p.Description,
		"currency": e.currency, "prices": prices, "specs": p.Specs, "config_options": opts,
	}
}

// orderView renders an order; e.mu must be held. service_id, invoice_id
// and paid_at are null until the order is paid.
func (e *Emulator) orderView(o *Order) map[string]any {
	var sid, iid, paid, failure, label any
	if o.Status == "paid" {
		sid, iid, paid = o.ServiceID, o.InvoiceID, rfc3339(o.PaidAt)
	}
	if o.FailureReason != "" {
		failure = o.FailureReason
	}
	if o.Label != "" {
		label = o.Label
	}
	return map[string]any{
		"id": o.ID, "status": o.Status, "product_id": o.ProductID, "billing_cycle": o.BillingCycle,
		"amount": money(o.Amount), "currency": o.Currency, "payment_method": o.PaymentMethod,
		"failure_reason": failure, "service_id": sid, "invoice_id": iid,
		"created_at": rfc3339(o.CreatedAt), "paid_at": paid, "label": label,
	}
}

// serviceView renders a service; e.mu must be held.
func (e *Emulator) serviceView(s *service) map[string]any {
	var pending any
	if s.action != nil {
		pending = map[string]any{"id": s.action.id, "action": s.action.name}
	}
	return map[string]any{
		"id": s.id, "order_id": s.orderID, "product_id": s.productID, "product_name": s.productName,
		"status": s.status, "power_state": s.power, "billing_cycle": s.billingCycle,
		"hostname":   fmt.Sprintf("srv%d.customers.kernelhost.example", s.id),
		"ip_address": serviceIP(s.id), "os": s.os, "pending_action": pending,
		"created_at": rfc3339(s.createdAt), "updated_at": rfc3339(s.updatedAt),
		"next_due_date": s.createdAt.UTC().AddDate(0, cycleMonths(s.billingCycle), 0).Format(time.DateOnly),
	}
}

func (e *Emulator) invoiceView(inv *invoice) map[string]any {
	return map[string]any{
		"id": inv.id, "number": invoiceNumber(inv), "order_id": inv.orderID, "status": "paid",
		"amount": money(inv.amount), "currency": inv.currency, "description": inv.text,
		"payment_method": inv.method,
		"created_at":     rfc3339(inv.createdAt),
		"pdf_url":        e.basePath + "/v1/billing/invoices/" + strconv.FormatInt(inv.id, 10) + "/pdf",
	}
}

func invoiceNumber(inv *invoice) string {
	return fmt.Sprintf("KH-%d-%06d", inv.createdAt.UTC().Year(), inv.id)
}

func serviceIP(id int64) string { return fmt.Sprintf("203.0.113.%d", id%250+1) }

func cycleMonths(c string) int {
	switch c {
	case "quarterly":
		return 3
	case "annually":
		return 12
	}
	return 1
}

// ---- JSON input ----

// decodeStrict decodes exactly one JSON object into v, rejecting unknown
// fields, and maps failures to validation errors naming the field.
func decodeStrict(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return validationError("body", "a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return validationError("body", "must contain exactly one JSON object")
	}
	return nil
}

func jsonError(err error) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return validationError("body", fmt.Sprintf("malformed JSON at byte offset %d", syn.Offset))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return validationError("body", "must be a JSON object")
		}
		want := "a string"
		if k := typ.Type.String(); strings.Contains(k, "int") {
			want = "an integer"
		} else if strings.HasPrefix(k, "map") {
			want = "an object"
		}
		return validationError(typ.Field, "must be "+want)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return validationError("body", "truncated JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return validationError(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
	}
	return validationError("body", "invalid JSON")
}

func fieldErrors(fields []problem.FieldError) *apiError {
	return &apiError{code: codeValidation, detail: "The request failed validation; see errors.", fields: fields}
}

// parsePage reads page (default 1) and per_page (default 20, 1..100).
func parsePage(r *http.Request) (page, perPage int, ae *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return 0, 0, validationError("query", "malformed query string")
	}
	var fields []problem.FieldError
	get := func(name string, def, hi int) int {
		vs, ok := q[name]
		if !ok {
			return def
		}
		if len(vs) > 1 {
			fields = append(fields, problem.FieldError{Field: name, Message: "given more than once"})
			return def
		}
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 1 || n > hi {
			fields = append(fields, problem.FieldError{Field: name, Message: fmt.Sprintf("must be an integer from 1 to %d", hi)})
			return def
		}
		return n
	}
	page = get("page", 1, 1000000)
	perPage = get("per_page", defaultPerPage, maxPerPage)
	if fields != nil {
		return 0, 0, fieldErrors(fields)
	}
	return page, perPage, nil
}

func pageEnvelope(items []any, total, page, perPage int) map[string]any {
	if items == nil {
		items = []any{}
	}
	return map[string]any{
		"data": items,
		"pagination": map[string]any{
			"page": page, "per_page": perPage, "total": total,
			"total_pages": (total + perPage - 1) / perPage,
		},
	}
}

// pageBounds returns the slice bounds of one page over n items.
func pageBounds(n, page, perPage int) (int, int) {
	start := min((page-1)*perPage, n)
	return start, min(start+perPage, n)
}

// ---- handlers ----

func (e *Emulator) handleHealth(c *call) *response {
	return jsonResponse(http.StatusOK, map[string]any{"status": "ok", "version": "v1", "time": rfc3339(c.serverNow)})
}

func (e *Emulator) handleMe(c *call) *response {
	e.mu.Lock()
	defer e.mu.Unlock()
	acct := e.accountLocked(c.key.Account)
	scopes := slices.Sorted(slices.Values(c.key.Scopes))
	if scopes == nil {
		scopes = []string{}
	}
	var hook any
	if u := e.hookURLs[c.key.ID]; u != "" {
		hook = u
	}
	whitelist := make([]string, 0, len(c.key.AllowIPs))
	for _, p := range c.key.AllowIPs {
		whitelist = append(whitelist, p.String())
	}
	var rl any
	if !e.rateCfg.Disabled {
		rl = map[string]int{"per_minute": e.rateCfg.PerMinute, "burst": e.rateCfg.Burst, "per_day": e.rateCfg.PerDay}
	}
	return jsonResponse(http.StatusOK, map[string]any{
		"account": map[string]any{
			"id": acct.id, "name": "Demo Reseller (" + acct.id + ")", "email": "reseller@example.com",
			"currency": e.currency, "balance": money(acct.balance), "card_on_file": acct.card != CardNone,
		},
		"key": map[string]any{"id": c.key.ID, "scopes": scopes, "webhook_url": hook, "rate_limit": rl,
			"ip_whitelist": whitelist},
	})
}

func (e *Emulator) handleProducts(c *call) *response {
	items := make([]any, 0, len(catalog))
	for i := range catalog {
		items = append(items, e.productView(&catalog[i]))
	}
	return jsonResponse(http.StatusOK, map[string]any{"data": items})
}

func (e *Emulator) handleProduct(c *call) *response {
	p := findProduct(c.id)
	if p == nil {
		return errorResponse(c.reqID, notFound("No such product."))
	}
	return jsonResponse(http.StatusOK, e.productView(p))
}

func (e *Emulator) handleOrder(c *call) *response {
	e.mu.Lock()
	defer e.mu.Unlock()
	o := e.orders[c.id]
	if o == nil || o.Account != c.key.Account {
		return errorResponse(c.reqID, notFound("No such order."))
	}
	return jsonResponse(http.StatusOK, e.orderView(o))
}

func (e *Emulator) handleServices(c *call) *response {
	return e.listPage(c, func(a *account) []int64 { return a.serviceIDs },
		func(id int64) any { return e.serviceView(e.services[id]) })
}

// listPage answers one page of the caller's account's ids (chosen by ids),
// each rendered by view, with e.mu held.
func (e *Emulator) listPage(c *call, ids func(*account) []int64, view func(id int64) any) *response {
	page, perPage, ae := parsePage(c.r)
	if ae != nil {
		return errorResponse(c.reqID, ae)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	all := ids(e.accountLocked(c.key.Account))
	lo, hi := pageBounds(len(all), page, perPage)
	items := make([]any, 0, hi-lo)
	for _, id := range all[lo:hi] {
		items = append(items, view(id))
	}
	return jsonResponse(http.StatusOK, pageEnvelope(items, len(all), page, perPage))
}

// ownService returns the caller's service or nil; e.mu must be held.
func (e *Emulator) ownService(c *call) *service {
	s := e.services[c.id]
	if s == nil || s.account != c.key.Account {
		return nil
	}
	return s
}

func (e *Emulator) handleService(c *call) *response {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.ownService(c)
	if s == nil {
		return errorResponse(c.reqID, notFound("No such service."))
	}
	return jsonResponse(http.StatusOK, e.serviceView(s))
}

func (e *Emulator) handleCredentials(c *call) *response {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.ownService(c)
	if s == nil {
		return errorResponse(c.reqID, notFound("No such service."))
	}
	user, proto, port := "root", "ssh", 22
	if strings.HasPrefix(s.os, "windows") {
		user, proto, port = "Administrator", "rdp", 3389
	}
	e.log.Info("credentials read (audit)", "request_id", c.reqID, "key", c.key.ID, "service_id", s.id)
	return jsonResponse(http.StatusOK, map[string]any{
		"service_id": s.id, "ip_address": serviceIP(s.id), "protocol": proto, "port": port,
		"username": user, "password": s.password,
	})
}

func (e *Emulator) handleBalance(c *call) *response {
	e.mu.Lock()
	defer e.mu.Unlock()
	acct := e.accountLocked(c.key.Account)
	return jsonResponse(http.StatusOK, map[string]any{
		"balance": money(acct.balance), "currency": e.currency, "card_on_file": acct.card != CardNone,
	})
}

func (e *Emulator) handleInvoices(c *call) *response {
	return e.listPage(c, func(a *account) []int64 { return a.invoiceIDs },
		func(id int64) any { return e.invoiceView(e.invoices[id]) })
}

func (e *Emulator) handleInvoicePDF(c *call) *response {
	e.mu.Lock()
	inv := e.invoices[c.id]
	if inv == nil || inv.account != c.key.Account {
		e.mu.Unlock()
		return errorResponse(c.reqID, notFound("No such invoice."))
	}
	cp := *inv
	e.mu.Unlock()
	body := invoicePDF([]string{
		"KernelHost - Invoice " + invoiceNumber(&cp),
		"Date: " + cp.createdAt.UTC().Format(time.DateOnly),
		"Account: " + cp.account,
		"Order: " + strconv.FormatInt(cp.orderID, 10),
		"Item: " + cp.text,
		"Total: " + money(cp.amount) + " " + cp.currency + " (paid by " + map[string]string{"credit": "credit balance", "card": "card on file"}[cp.method] + ")",
	})
	h := http.Header{}
	h.Set("Content-Type", "application/pdf")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="invoice-%d.pdf"`, cp.id))
	return &response{status: http.StatusOK, header: h, body: body}
}

func (e *Emulator) handleGetWebhook(c *call) *response {
	e.mu.Lock()
	u := e.hookURLs[c.key.ID]
	e.mu.Unlock()
	return jsonResponse(http.StatusOK, webhookView(u))
}

// insecureHint follows a refused webhook URL: the API refuses such URLs
// (spec §3), and the emulator has a switch for local receivers.
const insecureHint = " (the API's rule, spec §3; to send to a local http receiver, start the emulator with -allow-insecure-webhooks, Go: Options.AllowInsecureWebhooks)"

func webhookView(u string) map[string]any {
	if u == "" {
		return map[string]any{"url": nil}
	}
	return map[string]any{"url": u}
}

func (e *Emulator) handlePutWebhook(c *call) *response {
	var raw map[string]json.RawMessage
	if ae := decodeStrict(c.body, &raw); ae != nil {
		return errorResponse(c.reqID, ae)
	}
	for k := range raw {
		if k != "url" {
			return errorResponse(c.reqID, validationError(k, "unknown field"))
		}
	}
	rawURL, ok := raw["url"]
	if !ok {
		return errorResponse(c.reqID, validationError("url", `required (null or "" clears the webhook)`))
	}
	var u string
	if string(bytes.TrimSpace(rawURL)) != "null" {
		if err := json.Unmarshal(rawURL, &u); err != nil {
			return errorResponse(c.reqID, validationError("url", "must be a string or null"))
		}
	}
	if u != "" {
		if msg := e.hooks.Vet(c.r.Context(), u); msg != "" {
			if !e.initial.AllowInsecureWebhooks {
				msg += insecureHint
			}
			return errorResponse(c.reqID, validationError("url", msg))
		}
	}
	e.mu.Lock()
	if _, ok := e.auth.Get(c.key.ID); ok { // not a key Reset removed meanwhile
		e.hookURLs[c.key.ID] = u
	}
	e.mu.Unlock()
	return jsonResponse(http.StatusOK, webhookView(u))
}
