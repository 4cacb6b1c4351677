package apiroute

import (
	"strings"
	"testing"
)

func TestOf(t *testing.T) {
	tests := []struct {
		path string
		want string
	}{
		// Every route of the spec, with real-looking ids.
		{"/v1/health", "/v1/health"},
		{"/v1/me", "/v1/me"},
		{"/v1/products", "/v1/products"},
		{"/v1/products/42", "/v1/products/{id}"},
		{"/v1/orders", "/v1/orders"},
		{"/v1/orders/1001", "/v1/orders/{id}"},
		{"/v1/services", "/v1/services"},
		{"/v1/services/7", "/v1/services/{id}"},
		{"/v1/services/svc_01HX7Z3K8Q", "/v1/services/{id}"},
		{"/v1/services/7/credentials", "/v1/services/{id}/credentials"},
		{"/v1/services/7/actions", "/v1/services/{id}/actions"},
		{"/v1/billing/balance", "/v1/billing/balance"},
		{"/v1/billing/invoices", "/v1/billing/invoices"},
		{"/v1/billing/invoices/9/pdf", "/v1/billing/invoices/{id}/pdf"},
		{"/v1/webhooks", "/v1/webhooks"},

		// A query does not change the route.
		{"/v1/services?page=2&per_page=50", "/v1/services"},
		{"/v1/products/3?x=/v1/me", "/v1/products/{id}"},
		// Matching is exact: reqtarget has decoded percent-encoded
		// unreserved characters before Of sees a path.
		{"/v1/%70roducts", Other},
		{"/v1/services/%37", Other},

		// Unknown paths.
		{"", Other},
		{"/", Other},
		{"/v1", Other},
		{"/v1/", Other},
		{"/v2/products", Other},
		{"/v1/nope", Other},
		{"/cp/kh_reseller_api/v1/products", Other},
		{"/v1/products/", Other},
		{"/v1/products//", Other},
		{"//v1/products", Other},
		{"/v1//products", Other},
		{"/V1/PRODUCTS", Other},
		{"/v1/services/7/actions/extra", Other},
		{"/v1/billing/invoices/9/pdf/x/y/z/w", Other},
		{"v1/products", Other},
		{"http://evil.example/v1/products", Other},

		// Hostile ids and segments.
		{"/v1/services/..", Other},
		{"/v1/services/.", Other},
		{"/v1/services/%2e%2e", Other},
		{"/v1/services/%2E%2E/credentials", Other},
		{"/v1/services/..%2fme", Other},
		{"/v1/services/7%2Fcredentials", Other},
		{"/v1/services/%2F", Other},
		{"/v1/services/%zz", Other},
		{"/v1/services/%", Other},
		{"/v1/services/%00", Other},
		{"/v1/services/a%20b", Other},
		{"/v1/services/\x00", Other},
		{"/v1/services/caf\xc3\xa9", Other},
		{"/v1/services/<script>", Other},
		{"/v1/services/{id}", Other},
		{"/v1/products%2F42", Other},
		{"/v1/" + strings.Repeat("a/", 10000), Other},
		{"/v1/services/" + strings.Repeat("9", 4096), "/v1/services/{id}"},
	}
	for _, tt := range tests {
		name := tt.path
		if len(name) > 60 {
			name = name[:60] + "…"
		}
		t.Run(name, func(t *testing.T) {
			if got := Of(tt.path); got != tt.want {
				t.Errorf("Of(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

// TestOfOnlyTemplates feeds Of many generated paths and checks that it never
// returns a value outside the fixed list: label cardinality is bounded.
func TestOfOnlyTemplates(t *testing.T) {
	allowed := map[string]bool{Other: true}
	for _, tmpl := range Templates() {
		allowed[tmpl] = true
		if got := Of(strings.ReplaceAll(tmpl, "{id}", "12")); got != tmpl {
			t.Errorf("Of(%s with id 12) = %q, want the template itself", tmpl, got)
		}
	}
	pieces := []string{"", "/", "v1", "services", "7", "..", "%2F", "%", "?", "{id}", "pdf", "invoices", "billing"}
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		if got := Of(prefix); !allowed[got] {
			t.Fatalf("Of(%q) = %q, not a template", prefix, got)
		}
		if depth == 0 {
			return
		}
		for _, p := range pieces {
			gen(prefix+p, depth-1)
		}
	}
	gen("/", 5)
}

func TestMethod(t *testing.T) {
	tests := []struct{ in, want string }{
		{"GET", "GET"},
		{"HEAD", "HEAD"},
		{"POST", "POST"},
		{"PUT", "PUT"},
		{"PATCH", "PATCH"},
		{"DELETE", "DELETE"},
		{"OPTIONS", "OPTIONS"},
		{"get", Other},
		{"CONNECT", Other},
		{"TRACE", Other},
		{"PROPFIND", Other},
		{"", Other},
		{strings.Repeat("X", 1000), Other},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Method(tt.in); got != tt.want {
				t.Errorf("Method(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// go test ./apiroute -run '^$' -bench Of -benchmem
func BenchmarkOf(b *testing.B) {
	for _, path := range []string{"/v1/services/5001/credentials", "/v1/billing/invoices?page=2", "/v1/no/such/route"} {
		b.Run(path, func(b *testing.B) {
			for b.Loop() {
				Of(path)
			}
		})
	}
}
