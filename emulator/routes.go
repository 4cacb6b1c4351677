package emulator

import (
	"net/http"
	"strconv"
	"strings"
)

// Pseudo-scopes of spec §4.2.
const (
	scopePublic = "public"
	scopeAny    = "any"
)

// route is one endpoint of spec §5.
type route struct {
	method     string
	pattern    string // "/v1/services/{id}"
	scope      string
	idempotent bool // Idempotency-Key required
	write      bool // a 2xx answer commits state
	handler    func(*Emulator, *call) *response
}

var routes = []route{
	{"GET", "/v1/health", scopePublic, false, false, (*Emulator).handleHealth},
	{"GET", "/v1/me", scopeAny, false, false, (*Emulator).handleMe},
	{"GET", "/v1/products", ScopeReadProducts, false, false, (*Emulator).handleProducts},
	{"GET", "/v1/products/{id}", ScopeReadProducts, false, false, (*Emulator).handleProduct},
	{"POST", "/v1/orders", ScopeWriteOrders, true, true, (*Emulator).handleCreateOrder},
	{"GET", "/v1/orders/{id}", ScopeReadOrders, false, false, (*Emulator).handleOrder},
	{"GET", "/v1/services", ScopeReadServices, false, false, (*Emulator).handleServices},
	{"GET", "/v1/services/{id}", ScopeReadServices, false, false, (*Emulator).handleService},
	{"GET", "/v1/services/{id}/credentials", ScopeReadCredentials, false, false, (*Emulator).handleCredentials},
	{"POST", "/v1/services/{id}/actions", ScopeWriteServices, true, true, (*Emulator).handleAction},
	{"GET", "/v1/billing/balance", ScopeReadBilling, false, false, (*Emulator).handleBalance},
	{"GET", "/v1/billing/invoices", ScopeReadBilling, false, false, (*Emulator).handleInvoices},
	{"GET", "/v1/billing/invoices/{id}/pdf", ScopeReadBilling, false, false, (*Emulator).handleInvoicePDF},
	{"GET", "/v1/webhooks", ScopeReadWebhooks, false, false, (*Emulator).handleGetWebhook},
	{"PUT", "/v1/webhooks", ScopeWriteWebhooks, false, true, (*Emulator).handlePutWebhook},
}

// matchRoute finds the route for method and the raw (undecoded) path. When
// only the path matches, allow lists the methods it supports.
func matchRoute(method, path string) (rt *route, id int64, allow []string) {
	segs := strings.Split(path, "/")
	for i := range routes {
		pid, ok := matchPattern(routes[i].pattern, segs)
		if !ok {
			continue
		}
		// HEAD is GET without the body (net/http drops it).
		if routes[i].method == method || (method == http.MethodHead && routes[i].method == http.MethodGet) {
			return &routes[i], pid, nil
		}
		allow = append(allow, routes[i].method)
	}
	return nil, 0, allow
}

func matchPattern(pattern string, segs []string) (int64, bool) {
	ps := strings.Split(pattern, "/")
	if len(ps) != len(segs) {
		return 0, false
	}
	var id int64
	for i, p := range ps {
		if p == "{id}" {
			s := segs[i]
			if s == "" || len(s) > 18 || s[0] == '0' || strings.Trim(s, "0123456789") != "" {
				return 0, false
			}
			id, _ = strconv.ParseInt(s, 10, 64)
			continue
		}
		if p != segs[i] {
			return 0, false
		}
	}
	return id, true
}
