package reqtarget

import "testing"

func TestHasDotSegment(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/v1/..", true},
		{"..", true},
		{".", true},
		{`\..\`, true},
		{"/v1/%2e", true},
		{"/v1/%25%32%65%25%32%65", true},
		{"/v1/%25252e%25252e", true},
		{"/v1/x%2f%2e%2e%5cy", true},
		{"/v1//../", true},
		{"", false},
		{"/", false},
		{"/v1/...", false},
		{"/v1/.x/x./a.b", false},
		{"/v1/%2e%2e%2e", false},
		{"/v1/%zz..", false},
		{"/v1/..%", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := hasDotSegment(tt.path); got != tt.want {
				t.Errorf("hasDotSegment(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}
