package apiroute_test

import (
	"testing"

	"khproxy/apiroute"
)

func TestUnescapeAll(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"/v1/x", "/v1/x"},
		{"%2e%2E", ".."},
		{"%252e", "%2e"},
		{"%25%32%65", "%2e"},
		{"%", "%"},
		{"%2", "%2"},
		{"%zz%2e", "%zz."},
		{"a%2fb%5C", `a/b\`},
		{"%C3%A9", "é"},
		{"%%2e", "%."},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := apiroute.Unescape(tt.in, nil); got != tt.want {
				t.Errorf("Unescape(%q, nil) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestUnescapeSome: with a decode function, only the escapes it accepts are
// decoded; the others keep their case.
func TestUnescapeSome(t *testing.T) {
	letters := func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	tests := []struct{ in, want string }{
		{"/v1/%41%2f%7E", "/v1/A%2f%7E"},
		{"%6a%6B%zz%", "jk%zz%"},
		{"%252e", "%252e"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := apiroute.Unescape(tt.in, letters); got != tt.want {
				t.Errorf("Unescape(%q, letters) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
