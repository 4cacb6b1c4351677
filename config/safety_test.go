package config_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"khproxy/config"
)

func TestSafetyBadValues(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"budget zero", environ("KH_MAX_INFLIGHT_BYTES", "0"), "KH_MAX_INFLIGHT_BYTES"},
		{"budget negative", environ("KH_MAX_INFLIGHT_BYTES", "-1"), "KH_MAX_INFLIGHT_BYTES"},
		{"budget with unit", environ("KH_MAX_INFLIGHT_BYTES", "64MiB"), "KH_MAX_INFLIGHT_BYTES"},
		{"wait zero", environ("KH_MAX_INFLIGHT_WAIT", "0s"), "KH_MAX_INFLIGHT_WAIT"},
		{"wait not a duration", environ("KH_MAX_INFLIGHT_WAIT", "5"), "KH_MAX_INFLIGHT_WAIT"},
		{"wait not below read timeout", environ("KH_MAX_INFLIGHT_WAIT", "30s"), "KH_MAX_INFLIGHT_WAIT"},
		{"read timeout zero", environ("KH_READ_TIMEOUT", "0s"), "KH_READ_TIMEOUT"},
		{"read timeout negative", environ("KH_READ_TIMEOUT", "-5s"), "KH_READ_TIMEOUT"},
		{"max conns zero", environ("KH_MAX_CONNS", "0"), "KH_MAX_CONNS"},
		{"max conns not a number", environ("KH_MAX_CONNS", "many"), "KH_MAX_CONNS"},
		{"idle timeout zero", environ("KH_UPSTREAM_IDLE_TIMEOUT", "0s"), "KH_UPSTREAM_IDLE_TIMEOUT"},
		{"idle timeout empty", environ("KH_UPSTREAM_IDLE_TIMEOUT", ""), "KH_UPSTREAM_IDLE_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := config.Load(tt.env)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantVar) {
				t.Errorf("error %q does not name %s", err, tt.wantVar)
			}
		})
	}
}

// TestSafetyBudgetBelowBodyLimitWarns: a budget below the body limit starts
// with a warning, also when only KH_MAX_BODY_BYTES is raised above the
// default budget, as an app with larger bodies might do.
func TestSafetyBudgetBelowBodyLimitWarns(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		warn bool
	}{
		{"both set, budget below", environ("KH_MAX_INFLIGHT_BYTES", "1000", "KH_MAX_BODY_BYTES", "2000"), true},
		{"body limit raised alone", environ("KH_MAX_BODY_BYTES", "10485760"), true},
		{"both raised", environ("KH_MAX_BODY_BYTES", "10485760", "KH_MAX_INFLIGHT_BYTES", "67108864"), false},
		{"budget equal to the body limit", environ("KH_MAX_BODY_BYTES", "2097152"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, warns, err := config.Load(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.warn && (len(warns) != 1 || warns[0].Var != "KH_MAX_INFLIGHT_BYTES"):
				t.Errorf("warnings = %+v, want one for KH_MAX_INFLIGHT_BYTES", warns)
			case !tt.warn && len(warns) != 0:
				t.Errorf("warnings = %+v, want none", warns)
			}
		})
	}
}

// TestUpstreamUserInfoNeverQuoted tries URLs whose parse errors would quote
// part of the user info, and ones that parse but are refused.
func TestUpstreamUserInfoNeverQuoted(t *testing.T) {
	for _, v := range []string{
		"https://alice:s3cr%zzet@x/",   // bad escape inside the password
		"https://alice:ab%s3cret@x/",   // url.Parse would quote "%s3"
		"https://s3cr%zzet@x/",         // bad escape inside a token user name
		"https://alice:s3cret@x:port/", // bad port after user info
		"https://alice:s3 cret@x/",     // space in the password
		"https://alice:s3cret@x%zz/",   // bad escape in the host
		"ftp://s3cret@x/",              // wrong scheme, token as user name
		"https://alice:s3cret@x/?q=1",  // user info and a query
	} {
		_, _, err := config.Load(environ("KH_UPSTREAM", v))
		if err == nil {
			t.Errorf("KH_UPSTREAM=%q accepted", v)
			continue
		}
		if !strings.Contains(err.Error(), "KH_UPSTREAM") {
			t.Errorf("KH_UPSTREAM=%q: error %q does not name the variable", v, err)
		}
		for _, part := range []string{"s3cr", "cret", "alice", "%s3"} {
			if strings.Contains(err.Error(), part) {
				t.Errorf("KH_UPSTREAM=%q: error %q quotes the user info", v, err)
			}
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://alice:pw@host/p?q=1", "https://xxxxx@host/p?q=1"},
		{"https://token@host/p", "https://xxxxx@host/p"},
		{"https://host/p", "https://host/p"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := config.RedactURL(u); got != tt.want {
			t.Errorf("RedactURL(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := config.RedactURL(nil); got != "" {
		t.Errorf("RedactURL(nil) = %q, want empty", got)
	}
}

// A short KH_READ_TIMEOUT alone is not refused: the wait that must stay
// below it follows it, while a contradiction written out is still refused.
func TestInflightWaitFollowsReadTimeout(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		wantWait time.Duration
	}{
		{"defaults", environ(), 5 * time.Second},
		{"long read timeout keeps the default", environ("KH_READ_TIMEOUT", "60s"), 5 * time.Second},
		{"short read timeout alone", environ("KH_READ_TIMEOUT", "2s"), time.Second},
		{"read timeout equal to the default wait", environ("KH_READ_TIMEOUT", "5s"), 2500 * time.Millisecond},
		{"both set and consistent", environ("KH_READ_TIMEOUT", "2s", "KH_MAX_INFLIGHT_WAIT", "1500ms"), 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := config.Load(tt.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := c.MaxInflightWait; got != tt.wantWait {
				t.Errorf("KH_MAX_INFLIGHT_WAIT = %s, want %s", got, tt.wantWait)
			}
		})
	}
	wantErrorNaming(t, environ("KH_READ_TIMEOUT", "2s", "KH_MAX_INFLIGHT_WAIT", "5s"), "KH_MAX_INFLIGHT_WAIT")
}
