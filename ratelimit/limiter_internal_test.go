package ratelimit

import (
	"testing"
	"time"
)

func TestResetDuration(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"12", 12 * time.Second},
		{" 3 ", 3 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{"1700000030", 30 * time.Second}, // a Unix time
		{"1699999990", 0},                // a Unix time in the past
		{"99999999999999999999", 0},
	}
	for _, tt := range tests {
		if got := resetDuration(tt.in, now); got != tt.want {
			t.Errorf("resetDuration(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
