package config_test

import (
	"reflect"
	"strings"
	"testing"

	"khproxy/config"
)

func TestLoadAccess(t *testing.T) {
	c, _, err := config.Load(environ(
		"KH_ALLOWED_ORIGINS", "https://App.Example.com:443, http://localhost:3000,http://x.example:80/",
		"KH_ALLOWED_HOSTS", "KHProxy.payments.svc.cluster.local., 10.0.0.7,[FD00::1],::2,my_host",
	))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.AllowedOrigins, []string{"https://app.example.com", "http://localhost:3000", "http://x.example"}; !reflect.DeepEqual(got, want) {
		t.Errorf("origins = %q, want %q", got, want)
	}
	wantHosts := []string{"khproxy.payments.svc.cluster.local", "10.0.0.7", "fd00::1", "::2", "my_host"}
	if got := c.AllowedHosts; !reflect.DeepEqual(got, wantHosts) {
		t.Errorf("hosts = %q, want %q", got, wantHosts)
	}
	if got, want := c.AnsweredHosts(), append(wantHosts, "127.0.0.1", "www.kernelhost.com"); !reflect.DeepEqual(got, want) {
		t.Errorf("AnsweredHosts = %q, want %q", got, want)
	}
}

func TestAnsweredHosts(t *testing.T) {
	for _, tt := range []struct {
		listen string
		want   []string
	}{
		{"127.0.0.1:8080", []string{"127.0.0.1", "www.kernelhost.com"}},
		{"khproxy.internal:8080", []string{"khproxy.internal", "www.kernelhost.com"}},
		{"0.0.0.0:8080", []string{"www.kernelhost.com"}},
		{":8080", []string{"www.kernelhost.com"}},
		{"[::]:8080", []string{"www.kernelhost.com"}},
		{"unix:/run/khproxy.sock", []string{"www.kernelhost.com"}},
	} {
		c, _, err := config.Load(environ("KH_LISTEN", tt.listen))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.AnsweredHosts(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("KH_LISTEN=%s: AnsweredHosts = %q, want %q", tt.listen, got, tt.want)
		}
	}
}

func TestAccessBadValues(t *testing.T) {
	for _, tt := range []struct{ name, value, want string }{
		{"KH_ALLOWED_ORIGINS", "null", "sandboxed"},
		{"KH_ALLOWED_ORIGINS", "*", "not accepted"},
		{"KH_ALLOWED_ORIGINS", "app.example.com", "want an origin"},
		{"KH_ALLOWED_ORIGINS", "ftp://app.example.com", "want an origin"},
		{"KH_ALLOWED_ORIGINS", "https://", "want an origin"},
		{"KH_ALLOWED_ORIGINS", "https://app.example.com/path", "scheme://host[:port] only"},
		{"KH_ALLOWED_ORIGINS", "https://u:p@app.example.com", "scheme://host[:port] only"},
		{"KH_ALLOWED_ORIGINS", "https://app.example.com?x", "scheme://host[:port] only"},
		{"KH_ALLOWED_ORIGINS", "https://ok.example,https://app.example.com#f", "scheme://host[:port] only"},
		{"KH_ALLOWED_ORIGINS", "", "set but empty"},
		{"KH_ALLOWED_HOSTS", "*", "not accepted"},
		{"KH_ALLOWED_HOSTS", "http://khproxy", "without scheme"},
		{"KH_ALLOWED_HOSTS", "khproxy/x", "without scheme"},
		{"KH_ALLOWED_HOSTS", "khproxy:8080", "without a port"},
		{"KH_ALLOWED_HOSTS", "[::1]:8080", "without a port"},
		{"KH_ALLOWED_HOSTS", "a..b", "not a host name"},
		{"KH_ALLOWED_HOSTS", "ok,bad host", "not a host name"},
		{"KH_ALLOWED_HOSTS", "ok,,other", "want a host name"},
		{"KH_ALLOWED_HOSTS", "", "set but empty"},
	} {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, _, err := config.Load(environ(tt.name, tt.value))
			if err == nil || !strings.Contains(err.Error(), tt.name) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %s and saying %q", err, tt.name, tt.want)
			}
		})
	}
}

func TestListenWarningNamesAllowedHosts(t *testing.T) {
	_, warns, err := config.Load(environ("KH_LISTEN", "0.0.0.0:8080"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].Message, "KH_ALLOWED_HOSTS") {
		t.Errorf("warnings = %v, want one naming KH_ALLOWED_HOSTS", warns)
	}
	_, warns, _ = config.Load(environ("KH_LISTEN", "0.0.0.0:8080", "KH_ALLOWED_HOSTS", "khproxy"))
	if len(warns) != 1 || strings.Contains(warns[0].Message, "KH_ALLOWED_HOSTS") {
		t.Errorf("warnings = %v, want one not naming KH_ALLOWED_HOSTS", warns)
	}
}
