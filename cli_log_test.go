package main

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"khproxy/config"
	"khproxy/internal/testutil"
)

// TestLogDurationsInMilliseconds: whatever a call site passes (a
// time.Duration by slog.Duration, as an any, or in a group), the log has a
// number of milliseconds under a key ending in _ms, in JSON and text.
func TestLogDurationsInMilliseconds(t *testing.T) {
	var buf testutil.SyncBuffer
	log := newLogger(&buf, config.Logging{LogLevel: slog.LevelInfo, LogFormat: "json"})
	log.Info("x", slog.Duration("wait", 1500*time.Microsecond), "grace", 20*time.Second,
		slog.Group("g", "delay", time.Millisecond), "duration_ms", 3*time.Millisecond, "n", 5)
	var m map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"wait_ms": 1.5, "grace_ms": 20000.0, "duration_ms": 3.0, "n": 5.0}
	for k, w := range want {
		if m[k] != w {
			t.Errorf("%s = %v, want %v (line %s)", k, m[k], w, buf.String())
		}
	}
	if g, _ := m["g"].(map[string]any); g["delay_ms"] != 1.0 {
		t.Errorf("g.delay_ms = %v, want 1 (line %s)", g["delay_ms"], buf.String())
	}
	for _, k := range []string{"wait", "grace"} {
		if _, ok := m[k]; ok {
			t.Errorf("key %q left beside its _ms form", k)
		}
	}

	var text testutil.SyncBuffer
	newLogger(&text, config.Logging{LogLevel: slog.LevelInfo, LogFormat: "text"}).Info("x", "wait", 2*time.Second)
	if !strings.Contains(text.String(), "wait_ms=2000") {
		t.Errorf("text log = %q, want wait_ms=2000", text.String())
	}
}
