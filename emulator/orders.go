package emulator

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"khproxy/problem"
)

type orderRequest struct {
	ProductID    *int64            `json:"product_id"`
	BillingCycle *string           `json:"billing_cycle"`
	Config       map[string]string `json:"config"`
	Label        *string           `json:"label"`
}

// maxLabel is the longest order label, in bytes.
const maxLabel = 200

// orderLine is a validated order request.
type orderLine struct {
	product *product
	cycle   string
	osName  string
	label   string
}

// parseOrder validates an order body, naming every bad field.
func parseOrder(body []byte) (orderLine, *apiError) {
	var req orderRequest
	if ae := decodeStrict(body, &req); ae != nil {
		return orderLine{}, ae
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
	label := ""
	if req.Label != nil {
		label = *req.Label
		if label == "" || len(label) > maxLabel || strings.IndexFunc(label, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			bad("label", fmt.Sprintf("must be 1 to %d bytes without control characters", maxLabel))
		}
	}
	if fields != nil {
		return orderLine{}, fieldErrors(fields)
	}
	return orderLine{product: p, cycle: *req.BillingCycle, osName: osName, label: label}, nil
}

// fundLocked decides how an order of price is paid (spec §0: credit first,
// then the card on file) or returns the 402 that refuses it; e.mu must be
// held.
func (e *Emulator) fundLocked(acct *account, price int64) (string, *apiError) {
	if acct.clientNotFound {
		return "", clientNotFoundError()
	}
	if acct.balance >= price {
		return "credit", nil
	}
	short := fmt.Sprintf("The order total of %s %s exceeds the credit balance of %s %s",
		money(price), e.currency, money(acct.balance), e.currency)
	switch acct.card {
	case CardValid:
		return "card", nil
	case CardExpired:
		return "", &apiError{code: codePayment, reason: "card_expired",
			detail: short + " and the card on file has expired. Add a new card in the customer portal."}
	case CardDeclining:
		return "", &apiError{code: codePayment, reason: "card_declined",
			detail: short + " and the card on file was declined. Use another card or top up credit."}
	}
	return "", &apiError{code: codePayment, reason: "insufficient_credit_and_no_card",
		detail: short + " and no card is on file. Top up credit or add a card in the customer portal."}
}

// handleCreateOrder accepts an order as "pending" and leaves its payment
// to the lifecycle (settleOrder), which with a zero PaymentDelay runs
// before the answer is written.
func (e *Emulator) handleCreateOrder(c *call) *response {
	line, ae := parseOrder(c.body)
	if ae != nil {
		return c.fail(ae)
	}
	price := line.product.Prices[line.cycle]

	e.mu.Lock()
	acct := e.accountLocked(c.key.Account)
	if len(e.orders) >= e.maxOrders {
		e.mu.Unlock()
		return c.fail(&apiError{code: codeCapacity, reason: "order_limit",
			detail: fmt.Sprintf("The emulator holds at most %d orders; nothing was charged.", e.maxOrders)})
	}
	method, ae := e.fundLocked(acct, price)
	if ae != nil {
		e.mu.Unlock()
		return c.fail(ae)
	}
	if method == "credit" {
		acct.balance -= price // reserved now, so concurrent orders cannot overdraw
	}
	o := &Order{ID: e.nextOrder, Account: acct.id, KeyID: c.key.ID, ProductID: line.product.ID,
		BillingCycle: line.cycle, Amount: price, Currency: e.currency, Status: "pending",
		PaymentMethod: method, IdempotencyKey: c.idemKey, Label: line.label, CreatedAt: c.serverNow, osName: line.osName}
	e.nextOrder++
	e.orders[o.ID] = o
	e.orderIDs = append(e.orderIDs, o.ID)
	epoch := e.epoch
	e.mu.Unlock()

	e.life.later(paymentDelay, func() { e.settleOrder(epoch, o.ID) })

	e.mu.Lock()
	ov := e.orderView(o)
	e.mu.Unlock()
	resp := jsonResponse(http.StatusCreated, ov)
	resp.header.Set("Location", e.basePath+"/v1/orders/"+strconv.FormatInt(o.ID, 10))
	return resp
}

// settleOrder is the payment step: a pending order becomes paid (with an
// invoice and a provisioning service) or payment_failed, and its webhooks
// are sent. It does nothing after a Reset (another epoch).
func (e *Emulator) settleOrder(epoch int64, id int64) {
	e.mu.Lock()
	o := e.orders[id]
	if e.epoch != epoch || o == nil || o.Status != "pending" {
		e.mu.Unlock()
		return
	}
	acct := e.accountLocked(o.Account)
	now := e.serverNow()
	var evs []event
	failure := ""
	if o.PaymentMethod == "card" {
		switch acct.card {
		case CardDeclining:
			failure = "card_declined"
		case CardExpired:
			failure = "card_expired"
		case CardNone:
			failure = "insufficient_credit_and_no_card"
		}
	}
	if failure != "" {
		o.Status, o.FailureReason = "payment_failed", failure
		evs = append(evs, event{"order.payment_failed", e.orderView(o)})
	} else {
		e.payLocked(o, acct, now)
		evs = append(evs, event{"order.paid", e.orderView(o)}, event{"invoice.created", e.invoiceView(e.invoices[o.InvoiceID])})
	}
	urls := e.webhookURLsLocked(o.Account)
	sid := o.ServiceID
	e.mu.Unlock()

	e.sendEvents(urls, now, evs)
	if failure == "" {
		e.life.later(provisionDelay, func() { e.provisionService(epoch, sid) })
	}
}

// payLocked marks o paid and creates its invoice and its service, still
// provisioning; e.mu must be held.
func (e *Emulator) payLocked(o *Order, acct *account, now time.Time) {
	p := findProduct(o.ProductID)
	o.Status, o.PaidAt = "paid", now
	o.ServiceID, o.InvoiceID = e.nextService, e.nextInvoice
	e.nextService++
	e.nextInvoice++
	svc := &service{id: o.ServiceID, account: acct.id, orderID: o.ID, productID: p.ID, productName: p.Name,
		billingCycle: o.BillingCycle, status: "provisioning", power: "stopped", os: o.osName,
		password: randomString(20, alphanumeric), createdAt: now, updatedAt: now}
	inv := &invoice{id: o.InvoiceID, account: acct.id, orderID: o.ID, amount: o.Amount, currency: o.Currency,
		method: o.PaymentMethod, text: fmt.Sprintf("%s (%s)", p.Name, o.BillingCycle), createdAt: now}
	e.services[svc.id] = svc
	e.invoices[inv.id] = inv
	acct.serviceIDs = append(acct.serviceIDs, svc.id)
	acct.invoiceIDs = append(acct.invoiceIDs, inv.id)
}

// provisionService is the provisioning step: the service becomes active
// and running, and service.provisioned is sent.
func (e *Emulator) provisionService(epoch int64, id int64) {
	e.mu.Lock()
	s := e.services[id]
	if e.epoch != epoch || s == nil || s.status != "provisioning" {
		e.mu.Unlock()
		return
	}
	now := e.serverNow()
	s.status, s.power, s.updatedAt = "active", "running", now
	sv := e.serviceView(s)
	urls := e.webhookURLsLocked(s.account)
	e.mu.Unlock()
	e.sendEvents(urls, now, []event{{"service.provisioned", sv}})
}
