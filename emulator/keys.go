package emulator

import (
	"net/netip"

	"khproxy/emulator/apiauth"
)

// Scopes (spec §4.2, §5). GET /v1/health needs none and GET /v1/me any.
const (
	ScopeReadProducts    = apiauth.ScopeReadProducts
	ScopeWriteOrders     = apiauth.ScopeWriteOrders
	ScopeReadOrders      = apiauth.ScopeReadOrders
	ScopeReadServices    = apiauth.ScopeReadServices
	ScopeWriteServices   = apiauth.ScopeWriteServices
	ScopeReadCredentials = apiauth.ScopeReadCredentials
	ScopeReadBilling     = apiauth.ScopeReadBilling
	ScopeReadWebhooks    = apiauth.ScopeReadWebhooks
	ScopeWriteWebhooks   = apiauth.ScopeWriteWebhooks
)

// AllScopes returns a new slice with every scope of spec §5.
func AllScopes() []string { return apiauth.AllScopes() }

// ReadOnlyScopes returns a new slice with the scopes a new key has (spec
// §4.2): every read scope except the sensitive read:credentials.
func ReadOnlyScopes() []string { return apiauth.ReadOnlyScopes() }

// ParseScopes reads a scope list as the -scopes flag and the control
// endpoint take it: "all", "read-only" (ReadOnlyScopes), "none", or a
// comma-separated list of the spec's names (read:products,write:orders).
// It returns an error naming an unknown scope. The result is never nil.
func ParseScopes(s string) ([]string, error) { return apiauth.ParseScopes(s) }

// ParseAllowIPs reads an IP whitelist as the -allow-ip flag takes it: a
// comma-separated list of CIDR prefixes or single addresses, IPv4 or IPv6
// (spec §4.4). "" is an empty list (any address).
func ParseAllowIPs(s string) ([]netip.Prefix, error) { return apiauth.ParseAllowIPs(s) }

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
type Key = apiauth.Key

// ErrUnknownKey is returned by the runtime key controls for a key id the
// emulator does not have.
var ErrUnknownKey = apiauth.ErrUnknownKey

// withAccount fills in DefaultAccount for a key without one.
func withAccount(k Key) Key {
	if k.Account == "" {
		k.Account = DefaultAccount
	}
	return k
}

// SetKey adds a key or replaces the key with the same ID (for example to
// rotate its secret, which takes effect immediately, or to lock it). The
// key's webhook URL and rate-limit buckets survive a replacement. It is
// safe for concurrent use and returns an error for a malformed key.
func (e *Emulator) SetKey(k Key) error {
	k = withAccount(k)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.auth.Set(k); err != nil {
		return err
	}
	e.accountLocked(k.Account)
	return nil
}

// LockKey locks or unlocks key id at run time: a locked key's requests are
// rejected with 401 unknown_or_locked_key from the next request on, as the
// portal's lock does. It returns ErrUnknownKey for an unknown id and is
// safe for concurrent use.
func (e *Emulator) LockKey(id string, locked bool) error {
	_, err := e.auth.Update(id, func(k *Key) { k.Locked = locked })
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
	k, err := e.auth.Update(id, func(k *Key) { k.Secret = secret })
	return k.Secret, err
}

// SetScopes replaces key id's scopes at run time (nil: ReadOnlyScopes).
// It returns ErrUnknownKey for an unknown id or an error for an unknown
// scope, and is safe for concurrent use.
func (e *Emulator) SetScopes(id string, scopes []string) error {
	_, err := e.auth.Update(id, func(k *Key) { k.Scopes = scopes })
	return err
}

// SetAllowIPs replaces key id's IP whitelist at run time (empty: any
// address). It returns ErrUnknownKey for an unknown id and is safe for
// concurrent use.
func (e *Emulator) SetAllowIPs(id string, prefixes []netip.Prefix) error {
	_, err := e.auth.Update(id, func(k *Key) { k.AllowIPs = prefixes })
	return err
}
