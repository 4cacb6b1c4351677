package emulator

import (
	"fmt"
	"time"
)

// Order is a placed order as seen by test-inspection methods. Amount is in
// minor units of Currency.
type Order struct {
	ID             int64
	Account        string
	KeyID          string
	ProductID      int64
	BillingCycle   string
	Amount         int64
	Currency       string
	Status         string // always "paid": orders are only created when paid
	ServiceID      int64
	InvoiceID      int64
	IdempotencyKey string
	CreatedAt      time.Time
}

type account struct {
	id         string
	balance    int64
	serviceIDs []int64
	invoiceIDs []int64
}

type service struct {
	id           int64
	account      string
	orderID      int64
	productID    int64
	productName  string
	billingCycle string
	status       string // active, suspended, terminated
	power        string // running, stopped
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
