package webhooksend

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

const maxURLLen = 2048

// Vet checks a webhook URL (spec §3) and returns "" when it is acceptable,
// or the reason it is refused, worded for an API validation error. Without
// Options.Insecure the URL must be https, without user info, and its host
// must be, or resolve (through Options.Lookup, within 3 s) only to, public
// addresses; with it, http and https URLs to any host pass. Safe for
// concurrent use.
func (s *Sender) Vet(ctx context.Context, raw string) string {
	if len(raw) > maxURLLen {
		return fmt.Sprintf("must be at most %d characters", maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Hostname() == "" {
		return "must be an absolute URL"
	}
	scheme := strings.ToLower(u.Scheme)
	if s.insecure {
		if scheme != "https" && scheme != "http" {
			return "must use https (or http with insecure webhooks allowed)"
		}
		return ""
	}
	if scheme != "https" {
		return "must use https"
	}
	if u.User != nil {
		return "must not contain user info"
	}
	const privateMsg = "host must not be a loopback, private or link-local address"
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if !isPublic(a) {
			return privateMsg
		}
		return ""
	}
	lower := strings.ToLower(strings.TrimSuffix(host, "."))
	if lower == "localhost" || strings.HasSuffix(lower, ".localhost") {
		return privateMsg
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := s.lookup(ctx, host)
	if err != nil || len(addrs) == 0 {
		return "host does not resolve"
	}
	for _, a := range addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil || !isPublic(ip) {
			return "host resolves to a non-public address"
		}
	}
	return ""
}

// guardedTransport dials only public addresses unless insecure: the URL
// was vetted when it was set, but DNS may have changed since.
func guardedTransport(insecure bool) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		if insecure {
			return nil
		}
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return fmt.Errorf("webhook: bad address: %w", err)
		}
		if a, err := netip.ParseAddr(host); err != nil || !isPublic(a) {
			return fmt.Errorf("webhook: refusing to connect to non-public address %s", host)
		}
		return nil
	}}
	return &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: 5 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second, MaxIdleConns: 16, IdleConnTimeout: 30 * time.Second}
}

var nonPublicPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"), // documentation
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),
	// IPv6 forms that can carry or reach an IPv4 address: NAT64, 6to4,
	// Teredo; plus deprecated site-local and documentation.
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("fec0::/10"),
}

// isPublic reports whether a is a globally routable unicast address.
func isPublic(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublicPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
