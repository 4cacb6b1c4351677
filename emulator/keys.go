package emulator

import (
	"errors"
	"fmt"
	"net/netip"
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

// Key is one API key the emulator accepts. ID must match
// ^kh_live_[A-Z0-9]{32}$ and Secret must not be empty; its bytes are the
// HMAC key. Scopes must be names from AllScopes; nil means
// ReadOnlyScopes (a new key is read-only, spec §4.2) and an empty non-nil
// slice means none, so only /v1/me and /v1/health work. A Locked key is
// rejected with unknown_or_locked_key. AllowIPs is the key's IP whitelist
// (spec §4.4): when not empty, a correctly signed request from another
// client address (r.RemoteAddr) is rejected with ip_not_allowed. Keys with
// the same Account share orders, services, invoices, balance and card; an
// empty Account means DefaultAccount.
type Key struct {
	ID       string
	Secret   string
	Scopes   []string
	Locked   bool
	Account  string
	AllowIPs []netip.Prefix
}

// ErrUnknownKey is returned by the runtime key controls for a key id the
// emulator does not have.
var ErrUnknownKey = errors.New("emulator: no such key")

// keyState is a configured key plus its per-key state (guarded by e.mu).
type keyState struct {
	Key
	scopes     map[string]bool
	webhookURL string
}

// check validates k and returns it normalised (default scopes and
// account, cloned slices) with its scope set.
func (k Key) check() (Key, map[string]bool, error) {
	if !keyPattern.MatchString(k.ID) {
		return k, nil, fmt.Errorf("emulator: key id must match %s", keyPattern)
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
	if k.Account == "" {
		k.Account = DefaultAccount
	}
	k.Scopes = slices.Clone(k.Scopes)
	k.AllowIPs = slices.Clone(k.AllowIPs)
	return k, scopes, nil
}

// SetKey adds a key or replaces the key with the same ID (for example to
// rotate its secret, which takes effect immediately, or to lock it). The
// key's webhook URL and rate-limit buckets survive a replacement. It is
// safe for concurrent use and returns an error for a malformed key.
func (e *Emulator) SetKey(k Key) error {
	k, scopes, err := k.check()
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ks := &keyState{Key: k, scopes: scopes}
	if old := e.keys[k.ID]; old != nil {
		ks.webhookURL = old.webhookURL
	}
	e.keys[k.ID] = ks
	e.accountLocked(k.Account)
	return nil
}

// updateKey applies change to a copy of key id and stores it with SetKey's
// rules; the copy's Scopes and AllowIPs may be replaced, not modified.
func (e *Emulator) updateKey(id string, change func(*Key)) (Key, error) {
	e.mu.Lock()
	ks := e.keys[id]
	if ks == nil {
		e.mu.Unlock()
		return Key{}, fmt.Errorf("%w: %s", ErrUnknownKey, id)
	}
	k := ks.Key
	e.mu.Unlock()
	change(&k)
	k, scopes, err := k.check()
	if err != nil {
		return Key{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if cur := e.keys[id]; cur != nil {
		e.keys[id] = &keyState{Key: k, scopes: scopes, webhookURL: cur.webhookURL}
	}
	return k, nil
}

// LockKey locks or unlocks key id at run time: a locked key's requests are
// rejected with 401 unknown_or_locked_key from the next request on, as the
// portal's lock does. It returns ErrUnknownKey for an unknown id and is
// safe for concurrent use.
func (e *Emulator) LockKey(id string, locked bool) error {
	_, err := e.updateKey(id, func(k *Key) { k.Locked = locked })
	return err
}

// RotateSecret replaces key id's secret at run time and returns the new
// one; secret "" generates one like NewCredentials. The old secret fails
// with 401 signature_mismatch from the next request on, with no grace
// period (spec §1.5). It returns ErrUnknownKey for an unknown id and is
// safe for concurrent use.
func (e *Emulator) RotateSecret(id, secret string) (string, error) {
	if secret == "" {
		_, secret, _ = NewCredentials()
	}
	k, err := e.updateKey(id, func(k *Key) { k.Secret = secret })
	return k.Secret, err
}

// SetScopes replaces key id's scopes at run time (nil: ReadOnlyScopes).
// It returns ErrUnknownKey for an unknown id or an error for an unknown
// scope, and is safe for concurrent use.
func (e *Emulator) SetScopes(id string, scopes []string) error {
	_, err := e.updateKey(id, func(k *Key) { k.Scopes = scopes })
	return err
}

// SetAllowIPs replaces key id's IP whitelist at run time (empty: any
// address). It returns ErrUnknownKey for an unknown id and is safe for
// concurrent use.
func (e *Emulator) SetAllowIPs(id string, prefixes []netip.Prefix) error {
	_, err := e.updateKey(id, func(k *Key) { k.AllowIPs = prefixes })
	return err
}

// lookupKey returns the secret and a snapshot of an unlocked key, or nil.
// The snapshot's webhookURL is not maintained; read e.keys for it.
func (e *Emulator) lookupKey(id string) (string, *keyState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ks := e.keys[id]
	if ks == nil || ks.Locked {
		return "", nil
	}
	snap := *ks
	return ks.Secret, &snap
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
