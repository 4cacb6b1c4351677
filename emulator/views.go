package emulator

import (
	"fmt"
	"strconv"
	"time"
)

// rfc3339 formats t as the API's timestamps: UTC, whole seconds.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

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
