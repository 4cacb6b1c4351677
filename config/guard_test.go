package config_test

import (
	"testing"
	"time"

	"khproxy/config"
)

func TestSpendLimitUnmarshalText(t *testing.T) {
	tests := []struct {
		in   string
		want config.SpendLimit
	}{
		{"100EUR/24h", config.SpendLimit{Cents: 10000, Currency: "EUR", Per: 24 * time.Hour}},
		{"99.50EUR/7d", config.SpendLimit{Cents: 9950, Currency: "EUR", Per: 7 * 24 * time.Hour}},
		{"0.5 USD/h", config.SpendLimit{Cents: 50, Currency: "USD", Per: time.Hour}},
		{" 12.34EUR / 90m ", config.SpendLimit{Cents: 1234, Currency: "EUR", Per: 90 * time.Minute}},
		{"off", config.SpendLimit{}},
	}
	for _, tt := range tests {
		var s config.SpendLimit
		if err := s.UnmarshalText([]byte(tt.in)); err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if s != tt.want {
			t.Errorf("%q = %+v, want %+v", tt.in, s, tt.want)
		}
	}
	for _, bad := range []string{"", "100", "100EUR", "100/24h", "EUR100/24h", "100eur/24h", "100EURO/24h",
		"99.505EUR/24h", "99.EUR/24h", "-1EUR/24h", "1e3EUR/24h", "100EUR/0s", "100EUR/-1h", "100EUR/0d", "100EUR/1.5d", "100EUR/day"} {
		var s config.SpendLimit
		if err := s.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q: no error, got %+v", bad, s)
		}
	}
}

func TestGuardErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"allow empty", environ("KH_ALLOW", ""), "KH_ALLOW"},
		{"allow without path", environ("KH_ALLOW", "GET"), "KH_ALLOW"},
		{"allow lowercase method", environ("KH_ALLOW", "get /v1/products"), "KH_ALLOW"},
		{"allow empty segment", environ("KH_ALLOW", "GET /v1//products"), "KH_ALLOW"},
		{"allow only commas", environ("KH_ALLOW", ","), "KH_ALLOW"},
		{"order limit not a rate", environ("KH_ORDER_LIMIT", "10"), "KH_ORDER_LIMIT"},
		{"order limit zero", environ("KH_ORDER_LIMIT", "0/h"), "KH_ORDER_LIMIT"},
		{"order limit period too short", environ("KH_ORDER_LIMIT", "10/1ms"), "KH_ORDER_LIMIT"},
		{"order limit empty", environ("KH_ORDER_LIMIT", ""), "KH_ORDER_LIMIT"},
		{"spend limit without currency", environ("KH_SPEND_LIMIT", "100/24h"), "KH_SPEND_LIMIT"},
		{"spend limit three decimals", environ("KH_SPEND_LIMIT", "1.005EUR/24h"), "KH_SPEND_LIMIT"},
		{"spend limit zero", environ("KH_SPEND_LIMIT", "0EUR/24h"), "KH_SPEND_LIMIT"},
		{"spend limit empty", environ("KH_SPEND_LIMIT", ""), "KH_SPEND_LIMIT"},
		{"audit log empty", environ("KH_AUDIT_LOG", ""), "KH_AUDIT_LOG"},
		{"audit required not a boolean", environ("KH_AUDIT_REQUIRED", "yes please"), "KH_AUDIT_REQUIRED"},
		{"audit required without a log", environ("KH_AUDIT_REQUIRED", "true"), "KH_AUDIT_REQUIRED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantErrorNaming(t, tt.env, tt.wantVar) })
	}
}

func TestGuardValues(t *testing.T) {
	c, _, err := config.Load(environ("KH_ALLOW", "GET /v1/products, GET /v1/products/{id},POST /v1/orders",
		"KH_ORDER_LIMIT", "10/1h", "KH_SPEND_LIMIT", "99.50EUR/7d", "KH_AUDIT_LOG", "/var/log/khproxy/audit.jsonl", "KH_AUDIT_REQUIRED", "true"))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Guard
	wantAllow := []string{"GET /v1/products", "GET /v1/products/{id}", "POST /v1/orders"}
	if len(g.Allow) != len(wantAllow) {
		t.Fatalf("Allow = %v, want %v", g.Allow, wantAllow)
	}
	for i := range wantAllow {
		if got := g.Allow[i].String(); got != wantAllow[i] {
			t.Errorf("Allow[%d] = %v, want %v", i, got, wantAllow[i])
		}
	}
	if got, want := g.OrderLimit, (config.Rate{Count: 10, Per: time.Hour}); got != want {
		t.Errorf("OrderLimit = %v, want %v", got, want)
	}
	if got, want := g.SpendLimit, (config.SpendLimit{Cents: 9950, Currency: "EUR", Per: 168 * time.Hour}); got != want {
		t.Errorf("SpendLimit = %v, want %v", got, want)
	}
	if !g.AuditRequired || g.AuditLog != "/var/log/khproxy/audit.jsonl" {
		t.Errorf("audit = %q required %v", g.AuditLog, g.AuditRequired)
	}
	d, _, err := config.Load(environ())
	if err != nil {
		t.Fatal(err)
	}
	if d.Allow != nil || !d.OrderLimit.Off() || !d.SpendLimit.Off() || d.AuditLog != "" || d.AuditRequired {
		t.Errorf("defaults = %+v, want every guard setting off", d.Guard)
	}
}
