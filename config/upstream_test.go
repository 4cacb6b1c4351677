package config_test

import (
	"strings"
	"testing"

	"khproxy/config"
)

func TestUpstreamEndingInV1IsRefused(t *testing.T) {
	tests := []struct{ value, use string }{
		{"https://www.kernelhost.com/cp/kh_reseller_api/v1", "https://www.kernelhost.com/cp/kh_reseller_api"},
		{"https://www.kernelhost.com/cp/kh_reseller_api/v1/", "https://www.kernelhost.com/cp/kh_reseller_api"},
		{"http://127.0.0.1:8081/cp/kh_reseller_api/v1", "http://127.0.0.1:8081/cp/kh_reseller_api"},
		{"https://gateway.example/v1", "https://gateway.example"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			_, _, err := config.Load(environ("KH_UPSTREAM", tt.value))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "KH_UPSTREAM: ") || !strings.Contains(msg, "set KH_UPSTREAM="+tt.use) {
				t.Errorf("error %q: want it to name KH_UPSTREAM and the value %s", msg, tt.use)
			}
		})
	}
}

func TestUpstreamPathWarnings(t *testing.T) {
	tests := []struct {
		name, value, want string // want: in the warning; "" for no warning
	}{
		{"documented", "https://www.kernelhost.com/cp/kh_reseller_api", ""},
		{"documented with a slash", "https://www.kernelhost.com/cp/kh_reseller_api/", ""},
		{"documented path elsewhere", "https://api-gw.example/cp/kh_reseller_api", ""},
		{"documented path on loopback", "http://127.0.0.1:8081/cp/kh_reseller_api", ""},
		{"loopback emulator without base", "http://127.0.0.1:8081", "not the API's documented base path /cp/kh_reseller_api"},
		{"loopback with its own path", "http://localhost:9/api", "not the API's documented base path"},
		{"documented host, no path", "https://www.kernelhost.com", "use " + config.DocumentedUpstream},
		{"documented host, other path", "https://www.kernelhost.com/api", "use " + config.DocumentedUpstream},
		{"an endpoint path", "https://www.kernelhost.com/cp/kh_reseller_api/v1/products", "you probably mean https://www.kernelhost.com/cp/kh_reseller_api"},
		{"a gateway's own path", "https://gw.example/kernelhost", "not the API's documented base path /cp/kh_reseller_api"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, warns, err := config.Load(environ("KH_UPSTREAM", tt.value))
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if len(warns) != 0 {
					t.Errorf("warnings %+v, want none", warns)
				}
				return
			}
			if len(warns) != 1 || warns[0].Var != "KH_UPSTREAM" || !strings.Contains(warns[0].Message, tt.want) {
				t.Errorf("warnings %+v, want one for KH_UPSTREAM saying %q", warns, tt.want)
			}
		})
	}
}

func TestDocumentedUpstreamIsTheDefault(t *testing.T) {
	for _, v := range config.Vars() {
		if v.Name == "KH_UPSTREAM" && v.Default != config.DocumentedUpstream {
			t.Errorf("KH_UPSTREAM defaults to %s, DocumentedUpstream is %s", v.Default, config.DocumentedUpstream)
		}
	}
}
