package config

import (
	"net"
	"os"
	"reflect"
	"strings"
	"time"
)

// Ops is the part of the configuration that a platform such as Kubernetes
// talks to: the admin listener (probes and metrics) and the shutdown
// timing.
type Ops struct {
	AdminListen     string        `env:"KH_ADMIN_LISTEN" envDefault:":9090" allowEmpty:"true" help:"Address (host:port) of the admin listener: /healthz, /readyz and /metrics. Empty turns it off. It never signs anything; the default listens on all interfaces because the kubelet probes the pod IP."`
	ShutdownDelay   time.Duration `env:"KH_SHUTDOWN_DELAY" envDefault:"5s" help:"After SIGTERM, /readyz fails at once but requests are still served this long, while Kubernetes removes the pod from its endpoints; 0 stops at once."`
	ShutdownTimeout time.Duration `env:"KH_SHUTDOWN_TIMEOUT" envDefault:"20s" help:"After the delay, how long in-flight requests may take to finish before khproxy exits anyway."`
	// UpstreamCheckInterval is the mean time between two unsigned GET
	// /v1/health polls of the API (each wait is jittered by up to 10%),
	// whose result is the khproxy_upstream_up gauge and never readiness.
	UpstreamCheckInterval time.Duration `env:"KH_UPSTREAM_CHECK_INTERVAL" envDefault:"30s" help:"How often the API's GET /v1/health is polled (jittered by up to 10%) for the khproxy_upstream_up gauge; it never affects /readyz. Needs KH_ADMIN_LISTEN."`
}

// minUpstreamCheckInterval keeps the health poll from spending the API's
// per-IP request limit (spec §4.3), which every pod behind one egress IP
// shares.
const minUpstreamCheckInterval = 10 * time.Millisecond

// kubernetesGrace is Kubernetes' default terminationGracePeriodSeconds.
const kubernetesGrace = 30 * time.Second

// validate checks the admin listener and shutdown settings; listen is
// KH_LISTEN, which the admin listener must not share.
func (o *Ops) validate(v *validation, listen string) {
	if o.AdminListen != "" {
		_, port, err := net.SplitHostPort(o.AdminListen)
		switch {
		case err != nil:
			v.fail("KH_ADMIN_LISTEN", "must be host:port, like :9090, or empty to turn it off: %w", err)
		case port != "0" && port == portOf(listen):
			v.fail("KH_ADMIN_LISTEN", "must not use KH_LISTEN's port %s", port)
		}
	}
	if o.ShutdownDelay < 0 {
		v.fail("KH_SHUTDOWN_DELAY", "must not be negative, got %s", o.ShutdownDelay)
	}
	if o.ShutdownTimeout <= 0 {
		v.fail("KH_SHUTDOWN_TIMEOUT", "must be positive, got %s", o.ShutdownTimeout)
	}
	if o.UpstreamCheckInterval < minUpstreamCheckInterval {
		v.fail("KH_UPSTREAM_CHECK_INTERVAL", "must be at least %s, like 30s, got %s", minUpstreamCheckInterval, o.UpstreamCheckInterval)
	} else if o.UpstreamCheckInterval < 5*time.Second {
		v.warn("KH_UPSTREAM_CHECK_INTERVAL", "polling the API's health more often than every 5s spends the API's per-IP request limit, which every pod behind one egress IP shares")
	}
	if o.ShutdownDelay >= 0 && o.ShutdownTimeout > 0 && o.ShutdownDelay+o.ShutdownTimeout > kubernetesGrace {
		v.warn("KH_SHUTDOWN_TIMEOUT", "KH_SHUTDOWN_DELAY plus KH_SHUTDOWN_TIMEOUT exceeds Kubernetes' default 30 s grace period: raise the pod's terminationGracePeriodSeconds, or in-flight requests may be cut by SIGKILL")
	}
}

// portOf returns the port of a host:port address, "" for anything else.
func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return port
}

// unixPrefix starts a KH_LISTEN value that names a Unix socket.
const unixPrefix = "unix:"

// ListenNetwork returns the network and address to listen on for KH_LISTEN:
// "unix" and the socket's path for unix:/path, else "tcp" and host:port.
func (c Config) ListenNetwork() (network, address string) {
	if path, ok := strings.CutPrefix(c.Listen, unixPrefix); ok {
		return "unix", path
	}
	return "tcp", c.Listen
}

// validateListen checks KH_LISTEN: host:port, or unix:/path for a Unix
// socket, which only processes allowed to open the file can reach.
func (c *Config) validateListen(v *validation) {
	if path, ok := strings.CutPrefix(c.Listen, unixPrefix); ok {
		if path == "" || strings.ContainsRune(path, 0) {
			v.fail("KH_LISTEN", "unix: must be followed by the socket's path, like unix:/run/khproxy/khproxy.sock")
		}
		return
	}
	if host, _, err := net.SplitHostPort(c.Listen); err != nil {
		v.fail("KH_LISTEN", "must be host:port, like 127.0.0.1:8080, or unix:/path/to/socket: %w", err)
	} else if !isLoopbackHost(host) {
		msg := "listening beyond loopback: anyone who can reach this port can sign requests with your key and spend the account's money"
		if len(c.AllowedHosts) == 0 {
			msg += "; callers on other hosts get 421 until the host name they use is in KH_ALLOWED_HOSTS"
		}
		v.warn("KH_LISTEN", msg)
	}
}

// loadKeyFile fills c.Key from KH_KEY_FILE, when set, so that the key is
// judged by the same rules whichever variable gave it. The file is read
// once: a new key id means a new deployment.
func (c *Config) loadKeyFile(v *validation) {
	if c.KeyFile == "" {
		return
	}
	if c.Key != "" {
		v.fail("KH_KEY", "set either KH_KEY or KH_KEY_FILE, not both")
		return
	}
	raw, err := os.ReadFile(c.KeyFile)
	if err != nil {
		v.fail("KH_KEY_FILE", "cannot read the key id: %w", err)
		return
	}
	key := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	if key == "" {
		v.fail("KH_KEY_FILE", "the file is empty")
		return
	}
	if msg := checkKey(key); msg != "" {
		v.fail("KH_KEY_FILE", "the file's content %s", msg)
		return
	}
	c.Key = key
}

// allowedEmpty reports whether the variable of f may be set to "" (which
// then means the zero value, not the default).
func allowedEmpty(f reflect.StructField) bool { return f.Tag.Get("allowEmpty") == "true" }

// clearEmpty sets to their zero value the fields of dst (a pointer to a
// struct) whose variables are allowed to be empty and are set to "" in vars;
// caarlos0/env would give them their default instead.
func clearEmpty(dst reflect.Value, vars map[string]string) {
	v := dst.Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			clearEmpty(v.Field(i).Addr(), vars)
			continue
		}
		if val, ok := vars[f.Tag.Get("env")]; ok && val == "" && allowedEmpty(f) {
			v.Field(i).SetZero()
		}
	}
}
