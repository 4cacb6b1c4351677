package apiroute_test

import (
	"testing"

	"khproxy/apiroute"
)

// TestUnescape: nil decodes every valid escape once, in either case;
// a decode function limits it to the bytes it accepts, and the other
// escapes keep their case.
func TestUnescape(t *testing.T) {
	letters := func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	tests := []struct {
		in     string
		decode func(byte) bool
		want   string
	}{
		{"", nil, ""},
		{"/v1/x", nil, "/v1/x"},
		{"%2e%2E", nil, ".."},
		{"%252e", nil, "%2e"},
		{"%25%32%65", nil, "%2e"},
		{"%", nil, "%"},
		{"%2", nil, "%2"},
		{"%zz%2e", nil, "%zz."},
		{"a%2fb%5C", nil, `a/b\`},
		{"%C3%A9", nil, "é"},
		{"%%2e", nil, "%."},
		{"/v1/%41%2f%7E", letters, "/v1/A%2f%7E"},
		{"%6a%6B%zz%", letters, "jk%zz%"},
		{"%252e", letters, "%252e"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := apiroute.Unescape(tt.in, tt.decode); got != tt.want {
				t.Errorf("Unescape(%q, decode set: %v) = %q, want %q", tt.in, tt.decode != nil, got, tt.want)
			}
		})
	}
}
