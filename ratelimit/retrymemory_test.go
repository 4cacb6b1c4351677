package ratelimit_test

import (
	"testing"
	"time"

	"khproxy/ratelimit"
)

func TestRetryMemoryInProcess(t *testing.T) {
	m := ratelimit.NewRetryMemory(time.Minute, nil, nil)
	if _, ok := m.Get("fp"); ok {
		t.Fatal("empty memory remembers something")
	}
	m.Add("fp", "k1")
	if k, ok := m.Get("fp"); !ok || k != "k1" {
		t.Fatalf("Get = %q, %v; want k1", k, ok)
	}
	m.Forget("fp", "k2")
	if k, _ := m.Get("fp"); k != "k1" {
		t.Errorf("forgetting another key dropped k1: %q", k)
	}
	m.Forget("fp", "k1")
	if _, ok := m.Get("fp"); ok {
		t.Error("Forget kept the entry")
	}
}

func TestRetryMemoryExpires(t *testing.T) {
	m := ratelimit.NewRetryMemory(50*time.Millisecond, nil, nil)
	m.Add("fp", "k1")
	time.Sleep(200 * time.Millisecond)
	if k, ok := m.Get("fp"); ok {
		t.Errorf("entry outlived its window: %q", k)
	}
}
