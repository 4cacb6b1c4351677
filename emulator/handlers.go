package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"khproxy/problem"
)

var serviceActions = []string{"start", "stop", "reboot", "reinstall", "suspend", "unsuspend", "terminate"}

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

func (e *Emulator) orderView(o *Order) map[string]any {
	return map[string]any{
		"id": o.ID, "status": o.Status, "product_id": o.ProductID, "billing_cycle": o.BillingCycle,
		"amount": money(o.Amount), "currency": o.Currency, "service_id": o.ServiceID,
		"invoice_id": o.InvoiceID, "created_at": rfc3339(o.CreatedAt),
	}
}

func (e *Emulator) serviceView(s *service) map[string]any {
	return map[string]any{
		"id": s.id, "order_id": s.orderID, "product_id": s.productID, "product_name": s.productName,
		"status": s.status, "power_state": s.power, "billing_cycle": s.billingCycle,
		"hostname":   fmt.Sprintf("srv%d.customers.kernelhost.example", s.id),
		"ip_address": serviceIP(s.id), "os": s.os,
		"created_at": rfc3339(s.createdAt), "updated_at": rfc3339(s.updatedAt),
		"next_due_date": s.createdAt.UTC().AddDate(0, cycleMonths(s.billingCycle), 0).Format(time.DateOnly),
	}
}

func (e *Emulator) invoiceView(inv *invoice) map[string]any {
	return map[string]any{
		"id": inv.id, "number": invoiceNumber(inv), "order_id": inv.orderID, "status": "paid",
		"amount": money(inv.amount), "currency": inv.currency, "description": inv.text,
		"created_at": rfc3339(inv.createdAt),
		"pdf_url":    e.basePath + "/v1/billing/invoices/" + strconv.FormatInt(inv.id, 10) + "/pdf",
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
	acct := e.accounts[c.key.Account]
	scopes := slices.Sorted(slices.Values(c.key.Scopes))
	if scopes == nil {
		scopes = []string{}
	}
	var hook any
	if u := e.keys[c.key.ID].webhookURL; u != "" {
		hook = u
	}
	var rl any
	if !e.rateCfg.Disabled {
		rl = map[string]int{"per_minute": e.rateCfg.PerMinute, "burst": e.rateCfg.Burst, "per_day": e.rateCfg.PerDay}
	}
	return jsonResponse(http.StatusOK, map[string]any{
		"account": map[string]any{
			"id": acct.id, "name": "Demo Reseller (" + acct.id + ")", "email": "reseller@example.com",
			"currency": e.currency, "balance": money(acct.balance), "card_on_file": false,
		},
		"key": map[string]any{"id": c.key.ID, "scopes": scopes, "webhook_url": hook, "rate_limit": rl},
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

type orderRequest struct {
	ProductID    *int64            `json:"product_id"`
	BillingCycle *string           `json:"billing_cycle"`
	Config       map[string]string `json:"config"`
}

func (e *Emulator) handleCreateOrder(c *call) *response {
	var req orderRequest
	if ae := decodeStrict(c.body, &req); ae != nil {
		return errorResponse(c.reqID, ae)
	}
	var fields []problem.FieldError
	bad := func(f, m string) { fields = append(fields, problem.FieldError{Field: f, Message: m}) }
	var p *product
	switch {
	case req.ProductID == nil:
		bad("product_id", "required")
	case *req.ProductID < 1:
		bad("product_id", "must be a positive integer")
	default:
		if p = findProduct(*req.ProductID); p == nil {
			bad("product_id", "unknown product")
		}
	}
	switch {
	case req.BillingCycle == nil:
		bad("billing_cycle", "required")
	case !slices.Contains(billingCycles, *req.BillingCycle):
		bad("billing_cycle", "must be one of "+strings.Join(billingCycles, ", "))
	}
	osName := osOption.Default
	if p != nil {
		for _, name := range slices.Sorted(maps.Keys(req.Config)) {
			i := slices.IndexFunc(p.Options, func(o configOption) bool { return o.Name == name })
			switch {
			case i < 0:
				bad("config."+name, "not a config option of this product")
			case !slices.Contains(p.Options[i].Values, req.Config[name]):
				bad("config."+name, "must be one of "+strings.Join(p.Options[i].Values, ", "))
			case name == "os":
				osName = req.Config[name]
			}
		}
	}
	if fields != nil {
		return errorResponse(c.reqID, fieldErrors(fields))
	}
	price := p.Prices[*req.BillingCycle]
	now := c.serverNow

	e.mu.Lock()
	acct := e.accounts[c.key.Account]
	if len(e.orders) >= e.maxOrders {
		e.mu.Unlock()
		return errorResponse(c.reqID, &apiError{code: codeCapacity, reason: "order_limit",
			detail: fmt.Sprintf("The emulator holds at most %d orders; nothing was charged.", e.maxOrders)})
	}
	if acct.balance < price {
		bal := acct.balance
		e.mu.Unlock()
		return errorResponse(c.reqID, &apiError{code: codePayment, reason: "insufficient_credit_and_no_card",
			detail: fmt.Sprintf("The order total of %s %s exceeds the credit balance of %s %s and no card is on file. Top up credit or add a card in the customer portal.",
				money(price), e.currency, money(bal), e.currency)})
	}
	acct.balance -= price
	o := &Order{ID: e.nextOrder, Account: acct.id, KeyID: c.key.ID, ProductID: p.ID,
		BillingCycle: *req.BillingCycle, Amount: price, Currency: e.currency, Status: "paid",
		ServiceID: e.nextService, InvoiceID: e.nextInvoice, IdempotencyKey: c.idemKey, CreatedAt: now}
	svc := &service{id: e.nextService, account: acct.id, orderID: o.ID, productID: p.ID, productName: p.Name,
		billingCycle: o.BillingCycle, status: "active", power: "running", os: osName,
		password: randomString(20, alphanumeric), createdAt: now, updatedAt: now}
	inv := &invoice{id: e.nextInvoice, account: acct.id, orderID: o.ID, amount: price, currency: e.currency,
		text: fmt.Sprintf("%s (%s)", p.Name, o.BillingCycle), createdAt: now}
	e.nextOrder++
	e.nextService++
	e.nextInvoice++
	e.orders[o.ID] = o
	e.orderIDs = append(e.orderIDs, o.ID)
	e.services[svc.id] = svc
	e.invoices[inv.id] = inv
	acct.serviceIDs = append(acct.serviceIDs, svc.id)
	acct.invoiceIDs = append(acct.invoiceIDs, inv.id)
	ov, sv, iv := e.orderView(o), e.serviceView(svc), e.invoiceView(inv)
	urls := e.webhookURLsLocked(acct.id)
	e.mu.Unlock()

	e.hooks.enqueue(urls, now, []event{{"order.paid", ov}, {"service.provisioned", sv}, {"invoice.created", iv}})
	resp := jsonResponse(http.StatusCreated, ov)
	resp.header.Set("Location", e.basePath+"/v1/orders/"+strconv.FormatInt(o.ID, 10))
	return resp
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
	all := ids(e.accounts[c.key.Account])
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

type actionRequest struct {
	Action *string `json:"action"`
	OS     *string `json:"os"`
}

func (e *Emulator) handleAction(c *call) *response {
	var req actionRequest
	if ae := decodeStrict(c.body, &req); ae != nil {
		return errorResponse(c.reqID, ae)
	}
	switch {
	case req.Action == nil:
		return errorResponse(c.reqID, validationError("action", "required"))
	case !slices.Contains(serviceActions, *req.Action):
		return errorResponse(c.reqID, validationError("action", "must be one of "+strings.Join(serviceActions, ", ")))
	case req.OS != nil && *req.Action != "reinstall":
		return errorResponse(c.reqID, validationError("os", "only allowed with action reinstall"))
	case req.OS != nil && !slices.Contains(osOption.Values, *req.OS):
		return errorResponse(c.reqID, validationError("os", "must be one of "+strings.Join(osOption.Values, ", ")))
	}
	action := *req.Action
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.ownService(c)
	if s == nil {
		return errorResponse(c.reqID, notFound("No such service."))
	}
	if msg := transition(s, action, req.OS); msg != "" {
		return errorResponse(c.reqID, validationError("action", msg))
	}
	s.updatedAt = c.serverNow
	return jsonResponse(http.StatusOK, map[string]any{
		"id": "act_" + newULID(e.now()), "action": action, "status": "completed",
		"service_id": s.id, "completed_at": rfc3339(c.serverNow), "service": e.serviceView(s),
	})
}

// transition applies action to s and returns "" or why it is not allowed.
func transition(s *service, action string, osName *string) string {
	if s.status == "terminated" {
		return "the service is terminated"
	}
	notActive := fmt.Sprintf("cannot %s a %s service", action, s.status)
	switch action {
	case "start", "stop", "reboot", "reinstall", "suspend":
		if s.status != "active" {
			return notActive
		}
	}
	switch action {
	case "start":
		s.power = "running"
	case "stop":
		s.power = "stopped"
	case "reboot":
		if s.power != "running" {
			return "cannot reboot a stopped service; start it"
		}
	case "reinstall":
		if osName != nil {
			s.os = *osName
		}
		s.password = randomString(20, alphanumeric)
		s.power = "running"
	case "suspend":
		s.status, s.power = "suspended", "stopped"
	case "unsuspend":
		if s.status != "suspended" {
			return "the service is not suspended"
		}
		s.status, s.power = "active", "running"
	case "terminate":
		s.status, s.power = "terminated", "stopped"
	}
	return ""
}

func (e *Emulator) handleBalance(c *call) *response {
	e.mu.Lock()
	defer e.mu.Unlock()
	return jsonResponse(http.StatusOK, map[string]any{
		"balance": money(e.accounts[c.key.Account].balance), "currency": e.currency, "card_on_file": false,
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
		"Total: " + money(cp.amount) + " " + cp.currency + " (paid from credit balance)",
	})
	h := http.Header{}
	h.Set("Content-Type", "application/pdf")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="invoice-%d.pdf"`, cp.id))
	return &response{status: http.StatusOK, header: h, body: body}
}

func (e *Emulator) handleGetWebhook(c *call) *response {
	e.mu.Lock()
	u := e.keys[c.key.ID].webhookURL
	e.mu.Unlock()
	return jsonResponse(http.StatusOK, webhookView(u))
}

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
		if msg := e.hooks.vet(c.r.Context(), u); msg != "" {
			return errorResponse(c.reqID, validationError("url", msg))
		}
	}
	e.mu.Lock()
	e.keys[c.key.ID].webhookURL = u
	e.mu.Unlock()
	return jsonResponse(http.StatusOK, webhookView(u))
}
