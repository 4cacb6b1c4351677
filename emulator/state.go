package emulator

import (
	"fmt"
	"time"
)

// Order is a placed order as seen by test-inspection methods. Amount is in
// minor units of Currency.
type Order struct {
	ID           int64
	Account      string
	KeyID        string
	ProductID    int64
	BillingCycle string
	Amount       int64
	Currency     string
	// Status is "pending" until the payment settles, then "paid" or
	// "payment_failed" (see Lifecycle).
	Status string
	// PaymentMethod is "credit" (reserved from the balance when the order
	// was accepted) or "card" (charged when the payment settles).
	PaymentMethod string
	// FailureReason says why a payment_failed order failed: card_declined,
	// card_expired or insufficient_credit_and_no_card (card removed).
	FailureReason  string
	ServiceID      int64 // 0 until paid
	InvoiceID      int64 // 0 until paid
	IdempotencyKey string
	// Label is the order body's optional "label", kept as sent (an
	// emulator addition, so that tests can tell their purchases apart;
	// the spec documents no such field).
	Label     string
	CreatedAt time.Time
	PaidAt    time.Time // zero until paid

	osName string // config option for the service
}

// Card is the state of an account's card on file. Charges come from the
// credit balance first, then from the card (spec §0); the card is what
// the 402 reasons card_declined and card_expired are about (spec §6).
type Card string

// Card states. An empty Card means CardNone.
const (
	CardNone      Card = "none"      // no card: an order above the balance is 402 insufficient_credit_and_no_card
	CardValid     Card = "valid"     // the card pays what the credit does not cover
	CardDeclining Card = "declining" // 402 card_declined; payment_failed when it starts declining after acceptance
	CardExpired   Card = "expired"   // 402 card_expired; payment_failed when it expires after acceptance
)

// ParseCard reads a card state by name ("" is none) and returns an error
// for any other name.
func ParseCard(s string) (Card, error) {
	switch c := Card(s); c {
	case "", CardNone:
		return CardNone, nil
	case CardValid, CardDeclining, CardExpired:
		return c, nil
	}
	return "", fmt.Errorf("emulator: unknown card state %q (want none, valid, declining or expired)", s)
}

type account struct {
	id             string
	balance        int64
	card           Card
	clientNotFound bool // SetClientNotFound: orders are 402 client_not_found
	serviceIDs     []int64
	invoiceIDs     []int64
}

type service struct {
	id           int64
	account      string
	orderID      int64
	productID    int64
	productName  string
	billingCycle string
	status       string  // provisioning, active, suspended, terminated
	power        string  // running, stopped
	action       *action // the slow action still running, or nil
	os           string
	password     string
	createdAt    time.Time
	updatedAt    time.Time
}

type invoice struct {
	id        int64
	account   string
	orderID   int64
	amount    int64
	currency  string
	method    string // credit or card
	text      string
	createdAt time.Time
}

// product is one catalog entry; prices are per billing cycle, minor units.
type product struct {
	ID          int64
	Name        string
	Family      string
	Description string
	Prices      map[string]int64
	Specs       map[string]any
	Options     []configOption
}

type configOption struct {
	Name    string   `json:"name"`
	Label   string   `json:"label"`
	Type    string   `json:"type"`
	Values  []string `json:"values"`
	Default string   `json:"default"`
}

var billingCycles = []string{"monthly", "quarterly", "annually"}

var osOption = configOption{Name: "os", Label: "Operating system", Type: "select",
	Values: []string{"debian-12", "ubuntu-24.04", "rocky-9", "windows-2022"}, Default: "debian-12"}

var locationOption = configOption{Name: "location", Label: "Location", Type: "select",
	Values: []string{"fra", "nbg"}, Default: "fra"}

var catalog = []product{
	{ID: 7, Name: "Webspace S", Family: "webspace", Description: "10 GB SSD webspace, 5 domains",
		Prices: map[string]int64{"monthly": 249, "quarterly": 699, "annually": 2599},
		Specs:  map[string]any{"storage_gb": 10, "domains": 5}},
	{ID: 42, Name: "KVM Root Server M", Family: "kvm", Description: "4 vCores, 8 GB RAM, 160 GB NVMe, unlimited traffic",
		Prices:  map[string]int64{"monthly": 999, "quarterly": 2847, "annually": 10788},
		Specs:   map[string]any{"vcores": 4, "ram_gb": 8, "disk_gb": 160, "disk_type": "nvme", "traffic": "unlimited"},
		Options: []configOption{osOption, locationOption}},
	{ID: 108, Name: "Dedicated Server Ryzen 9", Family: "dedicated", Description: "Ryzen 9 7950X, 128 GB DDR5, 2x 2 TB NVMe",
		Prices:  map[string]int64{"monthly": 7900, "quarterly": 23700, "annually": 90000},
		Specs:   map[string]any{"cpu": "AMD Ryzen 9 7950X", "ram_gb": 128, "disk_gb": 4000},
		Options: []configOption{osOption}},
	{ID: 230, Name: "Minecraft Server 4 GB", Family: "minecraft", Description: "4 GB RAM, unlimited slots",
		Prices: map[string]int64{"monthly": 699, "quarterly": 1999, "annually": 7499},
		Specs:  map[string]any{"ram_gb": 4}},
	{ID: 301, Name: "VPN Basic", Family: "vpn", Description: "WireGuard VPN, unlimited traffic",
		Prices: map[string]int64{"monthly": 349, "quarterly": 999, "annually": 3699},
		Specs:  map[string]any{"protocol": "wireguard", "traffic": "unlimited"}},
}

func findProduct(id int64) *product {
	for i := range catalog {
		if catalog[i].ID == id {
			return &catalog[i]
		}
	}
	return nil
}

// money formats minor units as a decimal string ("9.99").
func money(minor int64) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s%d.%02d", sign, minor/100, minor%100)
}

// OrderCount returns the number of orders placed so far (all accounts).
// Safe for concurrent use.
func (e *Emulator) OrderCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.orders)
}

// Orders returns copies of all orders in creation order. Safe for
// concurrent use.
func (e *Emulator) Orders() []Order {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Order, 0, len(e.orderIDs))
	for _, id := range e.orderIDs {
		out = append(out, *e.orders[id])
	}
	return out
}

// Balance returns an account's credit in minor units and whether the
// account exists ("" means DefaultAccount). Safe for concurrent use.
func (e *Emulator) Balance(accountID string) (int64, bool) {
	if accountID == "" {
		accountID = DefaultAccount
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.accounts[accountID]
	if a == nil {
		return 0, false
	}
	return a.balance, true
}

// SetCard sets the card on file of an account ("" means DefaultAccount)
// at run time; an unknown account is created with the initial balance.
// It is safe for concurrent use and returns an error for an invalid card
// state.
func (e *Emulator) SetCard(accountID string, c Card) error {
	c, err := ParseCard(string(c))
	if err != nil {
		return err
	}
	if accountID == "" {
		accountID = DefaultAccount
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.accountLocked(accountID).card = c
	return nil
}

// accountLocked returns the account, creating it with the initial balance
// and card; e.mu must be held.
func (e *Emulator) accountLocked(id string) *account {
	a := e.accounts[id]
	if a == nil {
		a = &account{id: id, balance: e.initialBalance, card: e.initialCard}
		e.accounts[id] = a
	}
	return a
}

// Reset returns the emulator to the state New left it in: the keys of
// Options (original secrets, scopes, locks, whitelists; no webhook URLs),
// fresh accounts with the initial balance and card, no orders, services or
// invoices (ids start again at 1001, 5001, 9001), no nonces, idempotency
// records or rate-limit usage, Options.Faults (no injected-fault counts),
// Options.InProgress and Options.Lifecycle, no
// waiting lifecycle steps, no queued webhooks and an empty delivery log,
// zero request counts. Requests running during Reset finish against
// either state. Safe for concurrent use.
func (e *Emulator) Reset() {
	e.life.drop(false)
	e.life.setConfig(e.initial.Lifecycle)
	e.hooks.Reset()
	e.mu.Lock()
	e.epoch++
	e.clearLocked()
	keys := make([]Key, 0, len(e.initial.Keys))
	for _, k := range e.initial.Keys {
		k = withAccount(k)
		keys = append(keys, k)
		e.accountLocked(k.Account)
	}
	_ = e.auth.Replace(keys) // checked by New; also forgets the nonces
	e.mu.Unlock()
	e.idem.reset()
	e.limiter.reset()
	e.idem.setInProgress(e.initial.InProgress)
	e.faultMu.Lock()
	e.setFaultsLocked(e.initial.Faults)
	e.injected = nil
	e.faultMu.Unlock()
}
