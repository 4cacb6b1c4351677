package browserguard_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"khproxy/browserguard"
)

func TestCheck(t *testing.T) {
	g := browserguard.New(browserguard.Options{
		AllowedOrigins: []string{"http://localhost:3000", " HTTPS://App.Example ", "null"},
		AllowedHosts:   []string{"khproxy.svc", "[FD00::1]", "10.0.0.7."},
	})
	tests := []struct {
		name   string
		method string
		host   string
		header http.Header
		unix   bool
		want   browserguard.Reason // 0: served
	}{
		{name: "app on loopback", host: "127.0.0.1:8080"},
		{name: "localhost", host: "localhost:8080"},
		{name: "localhost, upper case, trailing dot", host: "LocalHost.:8080"},
		{name: "IPv6 loopback", host: "[::1]:8080"},
		{name: "IPv6 loopback without a port", host: "[::1]"},
		{name: "127/8", host: "127.1.2.3"},
		{name: "allowed host", host: "KHPROXY.svc:80"},
		{name: "allowed IPv6 host", host: "[fd00::1]:8080"},
		{name: "allowed address, trailing dot", host: "10.0.0.7:8080"},
		{name: "typed URL", host: "localhost", header: http.Header{"Sec-Fetch-Site": {"none"}}},
		{name: "allowed origin", host: "localhost", header: http.Header{"Origin": {"http://localhost:3000"}, "Sec-Fetch-Site": {"same-site"}}},
		{name: "allowed origin, case", host: "localhost", header: http.Header{"Origin": {"https://app.example"}}},

		{name: "foreign origin", host: "localhost", header: http.Header{"Origin": {"https://evil.example"}}, want: browserguard.FromBrowser},
		{name: "null origin never allowed", host: "localhost", header: http.Header{"Origin": {"null"}}, want: browserguard.FromBrowser},
		{name: "empty origin", host: "localhost", header: http.Header{"Origin": {""}}, want: browserguard.FromBrowser},
		{name: "allowed and foreign origin", host: "localhost", header: http.Header{"Origin": {"http://localhost:3000", "https://evil.example"}}, want: browserguard.FromBrowser},
		{name: "origin with another port", host: "localhost", header: http.Header{"Origin": {"http://localhost:3001"}}, want: browserguard.FromBrowser},
		{name: "cross-site without origin", host: "localhost", header: http.Header{"Sec-Fetch-Site": {"cross-site"}}, want: browserguard.FromBrowser},
		{name: "same-origin without origin", host: "localhost", header: http.Header{"Sec-Fetch-Site": {"same-origin"}}, want: browserguard.FromBrowser},
		{name: "preflight", method: "OPTIONS", host: "localhost", header: http.Header{"Origin": {"http://localhost:3000"}, "Access-Control-Request-Method": {"POST"}}, want: browserguard.Preflight},
		{name: "OPTIONS without preflight header", method: "OPTIONS", host: "localhost"},
		{name: "rebinding", host: "rebind.attacker.example:8080", want: browserguard.ForeignHost},
		{name: "address-like name", host: "127.0.0.1.nip.io", want: browserguard.ForeignHost},
		{name: "suffix of an allowed host", host: "evil-khproxy.svc", want: browserguard.ForeignHost},
		{name: "subdomain of localhost", host: "evil.localhost", want: browserguard.ForeignHost},
		{name: "unspecified address", host: "0.0.0.0:8080", want: browserguard.ForeignHost},
		{name: "empty host", host: "", want: browserguard.ForeignHost},
		{name: "unix socket, any host", host: "rebind.attacker.example", unix: true},
		{name: "unix socket, foreign origin", host: "x", unix: true, header: http.Header{"Origin": {"https://evil.example"}}, want: browserguard.FromBrowser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "POST"
			}
			r := httptest.NewRequest(method, "/v1/orders", nil)
			r.Host = tt.host
			r.Header = tt.header
			if r.Header == nil {
				r.Header = http.Header{}
			}
			var local net.Addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
			if tt.unix {
				local = &net.UnixAddr{Name: "/run/khproxy.sock", Net: "unix"}
			}
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, local))
			err := g.Check(r)
			var refusal *browserguard.Refusal
			switch {
			case tt.want == 0 && err != nil:
				t.Errorf("Check = %v, want nil", err)
			case tt.want != 0 && (!errors.As(err, &refusal) || refusal.Reason != tt.want):
				t.Errorf("Check = %v, want reason %d", err, tt.want)
			}
		})
	}
}

func TestZeroAndNilGuard(t *testing.T) {
	r := httptest.NewRequest("GET", "/v1/me", nil)
	r.Host = "localhost"
	for _, g := range []*browserguard.Guard{nil, {}} {
		if err := g.Check(r); err != nil {
			t.Errorf("Check(localhost) = %v", err)
		}
	}
	r.Host = "khproxy.svc"
	for _, g := range []*browserguard.Guard{nil, {}} {
		if err := g.Check(r); err == nil {
			t.Error("a foreign host was allowed")
		}
	}
}
