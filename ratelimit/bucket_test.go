package ratelimit_test

import (
	"testing"

	"khproxy/ratelimit"
	"khproxy/ratelimit/ratelimittest"
)

func TestMemoryConformance(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T, l ratelimit.Limit) ratelimit.Bucket {
		b, err := ratelimit.NewMemory(l, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestLimitCheck(t *testing.T) {
	tests := []struct {
		name string
		l    ratelimit.Limit
		ok   bool
	}{
		{"spec default", ratelimit.Limit{Every: 1e9, Burst: 20}, true},
		{"zero", ratelimit.Limit{}, false},
		{"no burst", ratelimit.Limit{Every: 1e9}, false},
		{"negative interval", ratelimit.Limit{Every: -1, Burst: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.l.Check(); (err == nil) != tt.ok {
				t.Errorf("Check() = %v, want ok %v", err, tt.ok)
			}
			if _, err := ratelimit.NewMemory(tt.l, nil); (err == nil) != tt.ok {
				t.Errorf("NewMemory: %v, want ok %v", err, tt.ok)
			}
		})
	}
}
