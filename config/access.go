package config

import (
	"net"
	"net/url"
	"strings"
)

// Access is the part of the configuration that says who, besides apps on
// the same machine, may use the signing listener: web pages of listed
// origins, and callers that address khproxy by a listed host name. Values
// are normalised by Load (lower case; origins without a default port,
// hosts without IPv6 brackets or a trailing dot).
type Access struct {
	AllowedOrigins []string `env:"KH_ALLOWED_ORIGINS" help:"Comma-separated origins (scheme://host[:port]) whose browser requests the signing listener serves; any other request with an Origin header, or with Sec-Fetch-Site other than none, gets 403, and CORS preflights always do. Unset: none."`
	AllowedHosts   []string `env:"KH_ALLOWED_HOSTS" help:"Comma-separated host names or IP addresses (no port) that a request's Host may name besides localhost, 127.0.0.0/8, [::1], KH_LISTEN's host and KH_UPSTREAM's host; others get 421 (this stops DNS rebinding). List the name callers on other hosts use, e.g. a Service's DNS name."`
}

// validate checks and normalises the origins and hosts.
func (a *Access) validate(v *validation) {
	for i, o := range a.AllowedOrigins {
		norm, err := normaliseOrigin(o)
		if err != "" {
			v.fail("KH_ALLOWED_ORIGINS", "%q: %s", o, err)
			continue
		}
		a.AllowedOrigins[i] = norm
	}
	for i, h := range a.AllowedHosts {
		norm, err := normaliseHost(h)
		if err != "" {
			v.fail("KH_ALLOWED_HOSTS", "%q: %s", h, err)
			continue
		}
		a.AllowedHosts[i] = norm
	}
}

// normaliseOrigin returns an origin as browsers serialise it in the Origin
// header, or why o is not one.
func normaliseOrigin(o string) (string, string) {
	o = strings.TrimSpace(o)
	switch {
	case o == "null":
		return "", `"null" is what sandboxed pages and local files send; it cannot be allowed`
	case o == "*":
		return "", "list the origins to allow; * is not accepted"
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return "", "want an origin like https://app.example.com or http://localhost:3000"
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", "an origin is scheme://host[:port] only, without user info, path, query or fragment"
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		host = strings.TrimSuffix(host, ":"+port)
	}
	return u.Scheme + "://" + host, ""
}

// normaliseHost returns a host name or IP address in the form compared
// with a request's Host, or why h is not one.
func normaliseHost(h string) (string, string) {
	h = strings.ToLower(strings.TrimSpace(h))
	bare := strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if ip := net.ParseIP(bare); ip != nil {
		return ip.String(), ""
	}
	switch {
	case h == "" || h == "*":
		return "", "want a host name or IP address, like khproxy.payments.svc.cluster.local; * is not accepted"
	case strings.Contains(h, "://") || strings.ContainsAny(h, "/?#@"):
		return "", "want a host name alone, without scheme, path or user info"
	case strings.Contains(h, ":"):
		return "", "want a host name without a port: any port is allowed"
	}
	h = strings.TrimSuffix(h, ".")
	for _, label := range strings.Split(h, ".") {
		if label == "" || strings.ContainsFunc(label, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) {
			return "", "not a host name: use letters, digits, - and _ between dots"
		}
	}
	return h, ""
}

func isUnspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// AnsweredHosts returns the hosts, besides loopback ones, that a request's
// Host may name on the signing listener: KH_ALLOWED_HOSTS, KH_LISTEN's host
// when it is a name or a specific address, and KH_UPSTREAM's host, which is
// what a client that uses khproxy as its HTTP_PROXY sends. A new slice on
// every call.
func (c Config) AnsweredHosts() []string {
	hosts := append([]string(nil), c.AllowedHosts...)
	if network, addr := c.ListenNetwork(); network == "tcp" {
		if host, _, err := net.SplitHostPort(addr); err == nil && !isUnspecified(host) {
			hosts = append(hosts, host)
		}
	}
	if c.Upstream != nil && c.Upstream.Hostname() != "" {
		hosts = append(hosts, c.Upstream.Hostname())
	}
	return hosts
}
