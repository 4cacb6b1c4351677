package testutil

import (
	"testing"

	"khproxy/apiroute"
)

// Patterns parses routes in package apiroute's syntax ("POST /v1/orders"),
// failing t on the first that does not parse.
func Patterns(t testing.TB, routes ...string) []apiroute.Pattern {
	t.Helper()
	ps := make([]apiroute.Pattern, len(routes))
	for i, r := range routes {
		p, err := apiroute.ParsePattern(r)
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	return ps
}
