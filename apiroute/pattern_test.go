package apiroute

import (
	"strings"
	"testing"
)

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
		errHas   string
	}{
		{in: "POST /v1/orders", want: "POST /v1/orders"},
		{in: "  POST   /v1/orders  ", want: "POST /v1/orders"},
		{in: "POST /v1/services/{id}/actions", want: "POST /v1/services/{id}/actions"},
		{in: "POST /v1/services/*/actions", want: "POST /v1/services/{id}/actions"},
		{in: "PUT /v1/webhooks", want: "PUT /v1/webhooks"},
		{in: "POST /v1/new-thing_2~x.y", want: "POST /v1/new-thing_2~x.y"},
		{in: "/v1/orders", errHas: "METHOD /path"},
		{in: "POST", errHas: "METHOD /path"},
		{in: "", errHas: "METHOD /path"},
		{in: "post /v1/orders", errHas: "upper-case"},
		{in: "P0ST /v1/orders", errHas: "upper-case"},
		{in: "POST v1/orders", errHas: "start with /"},
		{in: "POST /v1//orders", errHas: `segment ""`},
		{in: "POST /v1/orders/", errHas: `segment ""`},
		{in: "POST /v1/%6Frders", errHas: `segment "%6Frders"`},
		{in: "POST /v1/../orders", errHas: `segment ".."`},
		{in: "POST /v1/orders?x=1", errHas: `segment "orders?x=1"`},
		{in: "POST /v1/orders#x", errHas: `segment "orders#x"`},
		{in: "POST /v1/or ders", errHas: `segment "or ders"`},
		{in: "POST /v1/{ID}", errHas: `segment "{ID}"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePattern(tt.in)
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("ParsePattern(%q) = %v, %v; want an error with %q", tt.in, p, err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			again, err := ParsePattern(p.String())
			if err != nil || again.String() != p.String() {
				t.Errorf("String() does not parse back: %v, %v", again, err)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	orders := mustPattern(t, "POST /v1/orders")
	actions := mustPattern(t, "POST /v1/services/*/actions")
	tests := []struct {
		p            Pattern
		method, path string
		want         bool
	}{
		{orders, "POST", "/v1/orders", true},
		{orders, "POST", "/v1/orders?x=1", true},
		{orders, "GET", "/v1/orders", false},
		{orders, "post", "/v1/orders", false},
		{orders, "POST", "/v1/orders/", false},
		{orders, "POST", "/v1//orders", false},
		{orders, "POST", "/V1/orders", false},
		{orders, "POST", "/v1/%6Frders", false}, // reqtarget decodes it first
		{orders, "POST", "/v1/orders/1", false},
		{actions, "POST", "/v1/services/7/actions", true},
		{actions, "POST", "/v1/services/svc_1/actions?y", true},
		{actions, "POST", "/v1/services//actions", false},
		{actions, "POST", "/v1/services/../actions", false},
		{actions, "POST", "/v1/services/7%2F8/actions", false},
		{actions, "POST", "/v1/services/7/8/actions", false},
		{Pattern{}, "", "", false},
		{Pattern{}, "POST", "/v1/orders", false},
	}
	for _, tt := range tests {
		t.Run(tt.p.String()+" "+tt.method+" "+tt.path, func(t *testing.T) {
			if got := tt.p.Match(tt.method, tt.path); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPatternAgreesWithOf checks the one rule: for every template, a
// pattern made of it matches exactly the paths Of names with it.
func TestPatternAgreesWithOf(t *testing.T) {
	paths := []string{"/v1/orders", "/v1/orders/1", "/v1/services/7/actions", "/v1/services/x.y/credentials",
		"/v1/services/../actions", "/v1/services/%37/actions", "/v1/orders/", "/v1/billing/invoices/9/pdf", "/v1/x"}
	for _, tmpl := range Templates() {
		p := mustPattern(t, "POST "+tmpl)
		for _, path := range paths {
			if got, want := p.Match("POST", path), Of(path) == tmpl; got != want {
				t.Errorf("%s Match(%q) = %v, but Of = %q", p, path, got, Of(path))
			}
		}
	}
}

func TestMatchAny(t *testing.T) {
	ps := []Pattern{mustPattern(t, "POST /v1/orders"), mustPattern(t, "POST /v1/services/{id}/actions")}
	if p, ok := MatchAny(ps, "POST", "/v1/services/3/actions"); !ok || p.String() != "POST /v1/services/{id}/actions" {
		t.Errorf("MatchAny = %v, %v", p, ok)
	}
	if _, ok := MatchAny(ps, "GET", "/v1/orders"); ok {
		t.Error("MatchAny matched GET /v1/orders")
	}
	if _, ok := MatchAny(nil, "POST", "/v1/orders"); ok {
		t.Error("MatchAny(nil) matched")
	}
}

func TestResembles(t *testing.T) {
	tests := []struct {
		path, want string // want "" means it resembles nothing
	}{
		{"/v1/orders", ""}, // Of names it: nothing to resemble
		{"/v1/nope", ""},
		{"/v2/orders", ""},
		{"/", ""},
		{"/v1/services/1/actions/x", ""},
		{"/v1//orders", "/v1/orders"},
		{"/v1/orders/", "/v1/orders"},
		{"//v1/orders", "/v1/orders"},
		{"/V1/orders", "/v1/orders"},
		{"/v1/ORDERS?x", "/v1/orders"},
		{"/v1/%6Frders", "/v1/orders"},
		{"/v1/%256Frders", "/v1/orders"},
		{"/v1%2Forders", "/v1/orders"},
		{`/v1\orders`, "/v1/orders"},
		{"/v1/orders;jsessionid=1", "/v1/orders"},
		{"/v1/orders%20", "/v1/orders"},
		{"/v1/orders%00.json", "/v1/orders"},
		{"/v1/services/1%20/actions", "/v1/services/{id}/actions"},
		{"/v1/services/%61/actions", "/v1/services/{id}/actions"},
		{"/v1/services/1/%61ctions", "/v1/services/{id}/actions"},
		{"/v1/services/1/Actions/", "/v1/services/{id}/actions"},
		{"/v1/services/1/credentials/", "/v1/services/{id}/credentials"},
		{"/" + strings.Repeat("v1/", 20) + "orders", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, ok := Resembles(tt.path)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("Resembles(%q) = %q, %v; want %q", tt.path, got, ok, tt.want)
			}
		})
	}
}

func mustPattern(t testing.TB, s string) Pattern {
	t.Helper()
	p, err := ParsePattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
