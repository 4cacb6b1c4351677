package guard

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Money is an amount in hundredths of a currency unit (cents for EUR),
// with its ISO 4217 currency code. Amounts are decimal text in the API's
// answers ("9.99"); they are counted as whole hundredths, never as floats.
// The zero value is nothing in no currency.
type Money struct {
	Cents    int64
	Currency string
}

// String writes m as "9.99 EUR".
func (m Money) String() string { return FormatCents(m.Cents) + " " + m.Currency }

// FormatCents writes hundredths as a decimal, like 9.99 or -0.50.
func FormatCents(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// maxCents bounds an amount: far beyond any price, far from overflow when
// a period's amounts are added up.
const maxCents = 1e15

// errPrecision says that an amount has more than two decimals.
var errPrecision = errors.New("more than two decimals")

// ParseCents reads a non-negative decimal amount such as "9.99", "100" or
// "0.5" as hundredths. An amount with more than two decimals is an error
// wrapping errPrecision unless roundUp is set, when it is rounded up (an
// amount counted after the fact is never counted low).
func ParseCents(s string, roundUp bool) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || !digits(whole) || (strings.Contains(s, ".") && (frac == "" || !digits(frac))) {
		return 0, fmt.Errorf("amount %q: want a decimal like 9.99", s)
	}
	up := false
	if len(frac) > 2 {
		if !roundUp {
			return 0, fmt.Errorf("amount %q: %w", s, errPrecision)
		}
		up = strings.Trim(frac[2:], "0") != ""
		frac = frac[:2]
	}
	frac += strings.Repeat("0", 2-len(frac))
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > maxCents/100 {
		return 0, fmt.Errorf("amount %q: too large", s)
	}
	f, _ := strconv.ParseInt(frac, 10, 64)
	c := w*100 + f
	if up {
		c++
	}
	return c, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
