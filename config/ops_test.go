package config_test

import (
	"strings"
	"testing"
	"time"

	"khproxy/config"
	"khproxy/internal/testutil"
)

func TestOpsBadValues(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"admin without port", environ("KH_ADMIN_LISTEN", "0.0.0.0"), "KH_ADMIN_LISTEN"},
		{"admin nonsense", environ("KH_ADMIN_LISTEN", "metrics please"), "KH_ADMIN_LISTEN"},
		{"admin on the proxy's port", environ("KH_LISTEN", "127.0.0.1:8080", "KH_ADMIN_LISTEN", ":8080"), "KH_ADMIN_LISTEN"},
		{"delay not a duration", environ("KH_SHUTDOWN_DELAY", "5"), "KH_SHUTDOWN_DELAY"},
		{"delay negative", environ("KH_SHUTDOWN_DELAY", "-1s"), "KH_SHUTDOWN_DELAY"},
		{"delay empty", environ("KH_SHUTDOWN_DELAY", ""), "KH_SHUTDOWN_DELAY"},
		{"timeout zero", environ("KH_SHUTDOWN_TIMEOUT", "0s"), "KH_SHUTDOWN_TIMEOUT"},
		{"timeout negative", environ("KH_SHUTDOWN_TIMEOUT", "-20s"), "KH_SHUTDOWN_TIMEOUT"},
		{"timeout not a duration", environ("KH_SHUTDOWN_TIMEOUT", "twenty"), "KH_SHUTDOWN_TIMEOUT"},
		{"check interval zero", environ("KH_UPSTREAM_CHECK_INTERVAL", "0s"), "KH_UPSTREAM_CHECK_INTERVAL"},
		{"check interval negative", environ("KH_UPSTREAM_CHECK_INTERVAL", "-30s"), "KH_UPSTREAM_CHECK_INTERVAL"},
		{"check interval not a duration", environ("KH_UPSTREAM_CHECK_INTERVAL", "30"), "KH_UPSTREAM_CHECK_INTERVAL"},
		{"check interval empty", environ("KH_UPSTREAM_CHECK_INTERVAL", ""), "KH_UPSTREAM_CHECK_INTERVAL"},
		{"unix without path", environ("KH_LISTEN", "unix:"), "KH_LISTEN"},
		{"key and key file", environ("KH_KEY_FILE", "/x"), "KH_KEY"},
		{"key file missing", environ("KH_KEY", "<unset>", "KH_KEY_FILE", "/nonexistent/key"), "KH_KEY_FILE"},
		{"key file empty value", environ("KH_KEY", "<unset>", "KH_KEY_FILE", ""), "KH_KEY_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := config.Load(tt.env)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantVar+":") {
				t.Errorf("error %q does not name %s", err, tt.wantVar)
			}
		})
	}
}

func TestOpsValues(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want config.Ops
	}{
		{"defaults", environ(), config.Ops{AdminListen: ":9090", ShutdownDelay: 5 * time.Second, ShutdownTimeout: 20 * time.Second, UpstreamCheckInterval: 30 * time.Second}},
		{"admin off", environ("KH_ADMIN_LISTEN", ""), config.Ops{AdminListen: "", ShutdownDelay: 5 * time.Second, ShutdownTimeout: 20 * time.Second, UpstreamCheckInterval: 30 * time.Second}},
		{"admin on loopback, no delay", environ("KH_ADMIN_LISTEN", "127.0.0.1:0", "KH_SHUTDOWN_DELAY", "0s", "KH_SHUTDOWN_TIMEOUT", "1m"),
			config.Ops{AdminListen: "127.0.0.1:0", ShutdownDelay: 0, ShutdownTimeout: time.Minute, UpstreamCheckInterval: 30 * time.Second}},
		{"check interval", environ("KH_UPSTREAM_CHECK_INTERVAL", "2m"),
			config.Ops{AdminListen: ":9090", ShutdownDelay: 5 * time.Second, ShutdownTimeout: 20 * time.Second, UpstreamCheckInterval: 2 * time.Minute}},
		{"both on port 0", environ("KH_LISTEN", "127.0.0.1:0", "KH_ADMIN_LISTEN", "127.0.0.1:0"),
			config.Ops{AdminListen: "127.0.0.1:0", ShutdownDelay: 5 * time.Second, ShutdownTimeout: 20 * time.Second, UpstreamCheckInterval: 30 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := config.Load(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Ops != tt.want {
				t.Errorf("Ops = %+v, want %+v", c.Ops, tt.want)
			}
		})
	}
}

func TestOpsWarnsBeyondGracePeriod(t *testing.T) {
	_, warns, err := config.Load(environ("KH_SHUTDOWN_DELAY", "15s", "KH_SHUTDOWN_TIMEOUT", "20s"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || warns[0].Var != "KH_SHUTDOWN_TIMEOUT" {
		t.Errorf("warnings = %+v, want one for KH_SHUTDOWN_TIMEOUT", warns)
	}
}

func TestListenNetwork(t *testing.T) {
	tests := []struct {
		listen           string
		network, address string
		warns            int
	}{
		{"127.0.0.1:8080", "tcp", "127.0.0.1:8080", 0},
		{"[::1]:0", "tcp", "[::1]:0", 0},
		// A socket is guarded by its file mode, not by loopback.
		{"unix:/run/khproxy/khproxy.sock", "unix", "/run/khproxy/khproxy.sock", 0},
		{"unix:relative.sock", "unix", "relative.sock", 0},
	}
	for _, tt := range tests {
		t.Run(tt.listen, func(t *testing.T) {
			c, warns, err := config.Load(environ("KH_LISTEN", tt.listen))
			if err != nil {
				t.Fatal(err)
			}
			if n, a := c.ListenNetwork(); n != tt.network || a != tt.address {
				t.Errorf("ListenNetwork = %q, %q; want %q, %q", n, a, tt.network, tt.address)
			}
			if len(warns) != tt.warns {
				t.Errorf("warnings = %+v, want %d", warns, tt.warns)
			}
		})
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string { return testutil.WriteFile(t, dir, name, content) }
	t.Run("read once, newline trimmed", func(t *testing.T) {
		path := write("key", goodKey+"\r\n")
		c, warns, err := config.Load(environ("KH_KEY", "<unset>", "KH_KEY_FILE", path))
		if err != nil {
			t.Fatal(err)
		}
		if c.Key != goodKey || c.KeyFile != path || len(warns) != 0 {
			t.Errorf("Key, KeyFile, warnings = %q, %q, %v; want %q, %q, none", c.Key, c.KeyFile, warns, goodKey, path)
		}
	})
	t.Run("odd format warns about the file", func(t *testing.T) {
		c, warns, err := config.Load(environ("KH_KEY", "<unset>", "KH_KEY_FILE", write("odd", "my-key\n")))
		if err != nil {
			t.Fatal(err)
		}
		if c.Key != "my-key" || len(warns) != 1 || warns[0].Var != "KH_KEY_FILE" {
			t.Errorf("Key, warnings = %q, %+v; want my-key and one warning for KH_KEY_FILE", c.Key, warns)
		}
	})
	for _, bad := range []struct{ name, content string }{
		{"empty", ""},
		{"just a newline", "\n"},
		{"two lines", goodKey + "\n" + goodKey + "\n"},
		{"inner space", "kh_live_A B\n"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, _, err := config.Load(environ("KH_KEY", "<unset>", "KH_KEY_FILE", write(bad.name, bad.content)))
			if err == nil || !strings.HasPrefix(err.Error(), "KH_KEY_FILE: ") {
				t.Errorf("err = %v, want one naming KH_KEY_FILE alone", err)
			}
		})
	}
}

func TestOpsWarnsOfAFrequentHealthPoll(t *testing.T) {
	_, warns, err := config.Load(environ("KH_UPSTREAM_CHECK_INTERVAL", "1s"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || warns[0].Var != "KH_UPSTREAM_CHECK_INTERVAL" {
		t.Errorf("warnings = %+v, want one for KH_UPSTREAM_CHECK_INTERVAL", warns)
	}
}
