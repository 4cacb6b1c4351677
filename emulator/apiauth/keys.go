// Package apiauth holds the KernelHost API emulator's API keys and checks
// signed requests against them (spec §1 and §4.2–§4.4): the key store with
// its run-time controls (lock, rotate, scopes, IP whitelist), the KH-*
// headers, the HMAC-SHA256 signature, the timestamp window and the nonce
// replay cache. It knows nothing of the emulator's routes, accounts or
// problem bodies: a refused request comes back as a *Refusal, which the
// emulator renders.
package apiauth

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Scopes (spec §4.2, §5). GET /v1/health needs none and GET /v1/me any.
const (
	ScopeReadProducts    = "read:products"
	ScopeWriteOrders     = "write:orders"
	ScopeReadOrders      = "read:orders"
	ScopeReadServices    = "read:services"
	ScopeWriteServices   = "write:services"
	ScopeReadCredentials = "read:credentials"
	ScopeReadBilling     = "read:billing"
	ScopeReadWebhooks    = "read:webhooks"
	ScopeWriteWebhooks   = "write:webhooks"
)

var allScopes = []string{
	ScopeReadProducts, ScopeWriteOrders, ScopeReadOrders, ScopeReadServices, ScopeWriteServices,
	ScopeReadCredentials, ScopeReadBilling, ScopeReadWebhooks, ScopeWriteWebhooks,
}

// readOnlyScopes are the scopes of a new key (spec §4.2: "read-only by
// default"; write and sensitive scopes are enabled explicitly, so
// read:credentials is not among them).
var readOnlyScopes = []string{
	ScopeReadProducts, ScopeReadOrders, ScopeReadServices, ScopeReadBilling, ScopeReadWebhooks,
}

// KeyIDPattern is the form of a key id (spec §1.1): "kh_live_" and 32
// uppercase letters or digits.
var KeyIDPattern = regexp.MustCompile(`^kh_live_[A-Z0-9]{32}$`)

// AllScopes returns a new slice with every scope of spec §5.
func AllScopes() []string { return slices.Clone(allScopes) }

// ReadOnlyScopes returns a new slice with the scopes a new key has (spec
// §4.2): every read scope except the sensitive read:credentials.
func ReadOnlyScopes() []string { return slices.Clone(readOnlyScopes) }

// ParseScopes reads a scope list as the -scopes flag and the control
// endpoint take it: "all", "read-only" (ReadOnlyScopes), "none", or a
// comma-separated list of the spec's names (read:products,write:orders).
// It returns an error naming an unknown scope. The result is never nil.
func ParseScopes(s string) ([]string, error) {
	switch strings.TrimSpace(s) {
	case "all":
		return AllScopes(), nil
	case "read-only":
		return ReadOnlyScopes(), nil
	case "none":
		return []string{}, nil
	}
	out := []string{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
			continue
		case !slices.Contains(allScopes, name):
			return nil, fmt.Errorf("unknown scope %q (want all, read-only, none or a list of %s)", name, strings.Join(allScopes, ","))
		case !slices.Contains(out, name):
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, errors.New(`no scopes given (use "none" for a key without scopes)`)
	}
	return out, nil
}

// ParseAllowIPs reads an IP whitelist as the -allow-ip flag takes it: a
// comma-separated list of CIDR prefixes or single addresses, IPv4 or IPv6
// (spec §4.4). "" is an empty list (any address).
func ParseAllowIPs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("bad CIDR %q: %w", item, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("bad address %q: %w", item, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Key is one API key. ID must match KeyIDPattern and Secret must not be
// empty; its bytes are the HMAC key. Scopes must be names from AllScopes;
// nil means ReadOnlyScopes (a new key is read-only, spec §4.2) and an
// empty non-nil slice means none. A Locked key is refused with
// unknown_or_locked_key. AllowIPs is the key's IP whitelist (spec §4.4):
// when not empty, a correctly signed request from another client address
// (r.RemoteAddr) is refused with ip_not_allowed. Account is opaque to this
// package (the emulator fills in its default). A Key is a plain value.
type Key struct {
	ID       string
	Secret   string
	Scopes   []string
	Locked   bool
	Account  string
	AllowIPs []netip.Prefix
}

// ErrUnknownKey is returned by the key controls for a key id the store
// does not have.
var ErrUnknownKey = errors.New("emulator: no such key")

// check validates k and returns it normalised (default scopes, cloned
// slices) with its scope set.
func (k Key) check() (Key, map[string]bool, error) {
	if !KeyIDPattern.MatchString(k.ID) {
		return k, nil, fmt.Errorf("emulator: key id must match %s", KeyIDPattern)
	}
	if k.Secret == "" {
		return k, nil, fmt.Errorf("emulator: key %s: empty secret", k.ID)
	}
	if k.Scopes == nil {
		k.Scopes = ReadOnlyScopes()
	}
	scopes := map[string]bool{}
	for _, s := range k.Scopes {
		if !slices.Contains(allScopes, s) {
			return k, nil, fmt.Errorf("emulator: key %s: unknown scope %q", k.ID, s)
		}
		scopes[s] = true
	}
	for _, p := range k.AllowIPs {
		if !p.IsValid() {
			return k, nil, fmt.Errorf("emulator: key %s: invalid AllowIPs prefix", k.ID)
		}
	}
	k.Scopes = slices.Clone(k.Scopes)
	k.AllowIPs = slices.Clone(k.AllowIPs)
	return k, scopes, nil
}

// ipAllowed reports whether remoteAddr (host:port) is on the key's
// whitelist; an empty whitelist allows every address.
func (k *Key) ipAllowed(remoteAddr string) bool {
	if len(k.AllowIPs) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range k.AllowIPs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
