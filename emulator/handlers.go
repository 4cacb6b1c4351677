package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
		return c.fail(notFound("No such product."))
	}
	return jsonResponse(http.StatusOK, e.productView(p))
}

func (e *Emulator) handleOrder(c *call) *response {
	e.mu.Lock()
	defer e.mu.Unlock()
	o := e.orders[c.id]
	if o == nil || o.Account != c.key.Account {
		return c.fail(notFound("No such order."))
	}
	return jsonResponse(http.StatusOK, e.orderView(o))
}

func (e *Emulator) handleServices(c *call) *response {
	return e.listPage(c, func(a *account) []int64 { return a.serviceIDs },
		func(id int64) any { return e.serviceView(e.services[id]) })
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
		return c.fail(notFound("No such service."))
	}
	return jsonResponse(http.StatusOK, e.serviceView(s))
}

func (e *Emulator) handleCredentials(c *call) *response {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.ownService(c)
	if s == nil {
		return c.fail(notFound("No such service."))
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
		return c.fail(notFound("No such invoice."))
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
		return c.fail(ae)
	}
	for k := range raw {
		if k != "url" {
			return c.fail(validationError(k, "unknown field"))
		}
	}
	rawURL, ok := raw["url"]
	if !ok {
		return c.fail(validationError("url", `required (null or "" clears the webhook)`))
	}
	var u string
	if string(bytes.TrimSpace(rawURL)) != "null" {
		if err := json.Unmarshal(rawURL, &u); err != nil {
			return c.fail(validationError("url", "must be a string or null"))
		}
	}
	if u != "" {
		if msg := e.hooks.Vet(c.r.Context(), u); msg != "" {
			if !e.initial.AllowInsecureWebhooks {
				msg += insecureHint
			}
			return c.fail(validationError("url", msg))
		}
	}
	e.mu.Lock()
	if _, ok := e.auth.Get(c.key.ID); ok { // not a key Reset removed meanwhile
		e.hookURLs[c.key.ID] = u
	}
	e.mu.Unlock()
	return jsonResponse(http.StatusOK, webhookView(u))
}
