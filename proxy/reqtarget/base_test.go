package reqtarget_test

import (
	"strings"
	"testing"

	"khproxy/proxy/reqtarget"
)

// TestRelocate maps the Location values of TestLocationIsRelocated in
// proxy/, and more, into khproxy's path space.
func TestRelocate(t *testing.T) {
	tests := []struct {
		name, upstream, ref string
		want                string // "" means ref, unchanged, and false
	}{
		{"absolute path", basePath, basePath + "/v1/orders/1006", "/v1/orders/1006"},
		{"absolute URL", basePath, "http://" + upHost + basePath + "/v1/orders/1006", "/v1/orders/1006"},
		{"absolute URL, other case and scheme", basePath, "HTTPS://" + strings.ToUpper(upHost) + basePath + "/v1/orders/1006?x=1#top", "/v1/orders/1006?x=1#top"},
		{"the base alone", basePath, "http://" + upHost + basePath, "/"},
		{"the base and a query", basePath, basePath + "?x=1", "/?x=1"},
		{"the base and a fragment", basePath, "http://" + upHost + basePath + "#top", "/#top"},
		{"another host", basePath, "https://www.example.com" + basePath + "/v1/orders/1006", ""},
		{"another port", basePath, "http://127.0.0.1:1" + basePath + "/v1/orders/1006", ""},
		{"outside the base", basePath, "/elsewhere/orders/1006", ""},
		{"outside the base on the upstream", basePath, "http://" + upHost + "/elsewhere", ""},
		{"a longer first segment", basePath, basePath + "x/v1/orders", ""},
		{"relative", basePath, "orders/1006", ""},
		{"network-path", basePath, "//" + upHost + basePath + "/v1/orders/1006", ""},
		{"already khproxy's", basePath, "/v1/orders/1006", ""},
		{"another scheme", basePath, "ftp://" + upHost + basePath + "/v1/x", ""},
		{"empty", basePath, "", ""},

		{"no base path: an absolute path is already khproxy's", "", "/v1/orders/1006", ""},
		{"no base path: an absolute URL on the upstream", "", "http://" + upHost + "/v1/orders/1006", "/v1/orders/1006"},
		{"no base path: the upstream's host alone", "", "http://" + upHost, "/"},
		{"no base path: the upstream's host and a query", "", "http://" + upHost + "?x=1", "/?x=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := reqtarget.NewBase(mustParse(t, "http://"+upHost+tt.upstream))
			want, wantOK := tt.want, tt.want != ""
			if !wantOK {
				want = tt.ref
			}
			got, ok := base.Relocate(tt.ref)
			if got != want || ok != wantOK {
				t.Errorf("Relocate(%q) = %q, %v; want %q, %v", tt.ref, got, ok, want, wantOK)
			}
		})
	}
}

// TestRelocateDefaultPorts checks that an authority with and without its
// scheme's default port is the same server, and that the ports differ
// between http and https.
func TestRelocateDefaultPorts(t *testing.T) {
	tests := []struct {
		upstream, ref string
		want          bool
	}{
		{"https://api.example", "https://api.example:443/v1/x", true},
		{"https://api.example:443", "https://API.EXAMPLE/v1/x", true},
		{"http://api.example", "http://api.example:80/v1/x", true},
		{"http://api.example:80", "http://api.example/v1/x", true},
		{"https://api.example", "http://api.example/v1/x", false},
		{"https://api.example", "http://api.example:443/v1/x", true},
		{"https://api.example", "https://api.example:8443/v1/x", false},
		{"http://[::1]", "http://[::1]:80/v1/x", true},
		{"http://[::1]:8080", "http://[::1]/v1/x", false},
	}
	for _, tt := range tests {
		t.Run(tt.upstream+" "+tt.ref, func(t *testing.T) {
			base := reqtarget.NewBase(mustParse(t, tt.upstream+basePath))
			ref := strings.Replace(tt.ref, "/v1/x", basePath+"/v1/x", 1)
			got, ok := base.Relocate(ref)
			if ok != tt.want || (ok && got != "/v1/x") {
				t.Errorf("Relocate(%q) = %q, %v; want it relocated: %v", ref, got, ok, tt.want)
			}
		})
	}
}
