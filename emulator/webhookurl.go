package emulator

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

const webhookMaxURLLen = 2048

// vet checks a webhook URL (spec §3) and returns "" or the reason it is
// refused.
func (s *webhookSender) vet(ctx context.Context, raw string) string {
	if len(raw) > webhookMaxURLLen {
		return fmt.Sprintf("must be at most %d characters", webhookMaxURLLen)
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
	addrs, err := s.e.lookupIP(ctx, host)
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

func defaultLookup(ctx context.Context, host string) ([]string, error) {
	return net.DefaultResolver.LookupHost(ctx, host)
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
