package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
)

// accountPattern is what an account id may look like: the emulator's
// choice (the spec shows no account ids); DefaultAccount matches it.
var accountPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ErrUnknownAccount is returned by SetClientNotFound for an account the
// emulator does not have.
var ErrUnknownAccount = errors.New("emulator: unknown account")

// NewKey creates a key with fresh credentials (NewCredentials) for account
// ("" means DefaultAccount; a new account starts with the initial balance
// and card), with scopes (nil: ReadOnlyScopes, as a new key is, spec §4.2)
// and the IP whitelist allowIPs (empty: any address), and returns it. Keys
// of one account share its orders, services, invoices, balance and card;
// other accounts' resources are 404 to it (spec §4.5). Reset removes keys
// made here. It returns an error for a malformed account id or an unknown
// scope, and is safe for concurrent use.
func (e *Emulator) NewKey(account string, scopes []string, allowIPs []netip.Prefix) (Key, error) {
	if account == "" {
		account = DefaultAccount
	}
	if !accountPattern.MatchString(account) {
		return Key{}, fmt.Errorf("emulator: account %q must match %s", account, accountPattern)
	}
	id, secret, err := NewCredentials()
	if err != nil {
		return Key{}, err
	}
	k := Key{ID: id, Secret: secret, Account: account, Scopes: scopes, AllowIPs: allowIPs}
	if err := e.SetKey(k); err != nil {
		return Key{}, err
	}
	k, _ = e.auth.Get(id)
	return k, nil
}

// SetClientNotFound makes POST /v1/orders of account answer 402
// payment_required with reason client_not_found (spec §6: "account id not
// found; should practically never happen") while on is true; reads and
// other calls keep working. It returns ErrUnknownAccount for an account
// the emulator does not have, and is safe for concurrent use. Reset turns
// it off.
func (e *Emulator) SetClientNotFound(account string, on bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.accounts[account]
	if a == nil {
		return fmt.Errorf("%w %q", ErrUnknownAccount, account)
	}
	a.clientNotFound = on
	return nil
}

// clientNotFoundError is the 402 of an account whose billing client is
// missing (SetClientNotFound).
func clientNotFoundError() *apiError {
	return &apiError{code: codePayment, reason: "client_not_found",
		detail: "The account's billing client was not found; nothing was charged. Contact support."}
}

// controlNewKey is POST /__emulator/keys: {"account","scopes","allow_ips"},
// each optional, answered 201 with the key's view and its secret.
func (e *Emulator) controlNewKey(_ string, body []byte) (any, *controlError) {
	var j struct {
		Account  string          `json:"account"`
		Scopes   json.RawMessage `json:"scopes"`
		AllowIPs []string        `json:"allow_ips"`
	}
	if ce := decodeControl(body, &j); ce != nil {
		return nil, ce
	}
	var sc []string // absent: nil, read-only, as a new key is (spec §4.2)
	if len(j.Scopes) > 0 && string(j.Scopes) != "null" {
		var ce *controlError
		if sc, ce = scopesFromJSON(j.Scopes); ce != nil {
			return nil, ce
		}
	}
	allow, err := ParseAllowIPs(strings.Join(j.AllowIPs, ","))
	if err != nil {
		return nil, badControl("allow_ips: %v", err)
	}
	k, err := e.NewKey(j.Account, sc, allow)
	if err != nil {
		return nil, badControl("%v", err)
	}
	view := keyView(k, "")
	view["secret"] = k.Secret
	return created{view}, nil
}

// controlAccount is PUT /__emulator/accounts/{id}: {"client_not_found": bool}.
func (e *Emulator) controlAccount(id string, body []byte) (any, *controlError) {
	var j struct {
		ClientNotFound *bool `json:"client_not_found"`
	}
	if ce := decodeControl(body, &j); ce != nil {
		return nil, ce
	}
	if j.ClientNotFound == nil {
		return nil, badControl(`want {"client_not_found": true} or false`)
	}
	if err := e.SetClientNotFound(id, *j.ClientNotFound); err != nil {
		return nil, &controlError{status: http.StatusNotFound, detail: err.Error()}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.accountView(e.accounts[id]), nil
}

// accountView is an account as the control endpoint shows it; e.mu must be
// held.
func (e *Emulator) accountView(a *account) map[string]any {
	return map[string]any{"id": a.id, "balance": money(a.balance), "currency": e.currency,
		"card": string(a.card), "client_not_found": a.clientNotFound}
}

// scopesFromJSON reads a control body's "scopes": a string in any
// ParseScopes form ("all", "read-only", "none", "read:products,...") or a
// list of scope names ([] is none).
func scopesFromJSON(raw json.RawMessage) ([]string, *controlError) {
	var list []string
	var one string
	switch {
	case json.Unmarshal(raw, &one) == nil:
	case json.Unmarshal(raw, &list) == nil && list != nil:
		one = strings.Join(list, ",")
		if len(list) == 0 {
			one = "none"
		}
	default:
		return nil, badControl(`scopes: want a string ("all", "read-only", "none", "read:products,...") or a list of scope names`)
	}
	scopes, err := ParseScopes(one)
	if err != nil {
		return nil, badControl("scopes: %v", err)
	}
	return scopes, nil
}

// created marks a control answer that is sent with 201 Created.
type created struct{ v any }
