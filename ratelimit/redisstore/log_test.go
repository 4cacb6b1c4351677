package redisstore_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/ratelimit/redisstore"
)

// TestSetLoggerRoutesTheClientsMessages: with Redis down, the client's own
// messages (the pool's failed dials) arrive as JSON lines of the given
// logger at WARN, and nothing else is written.
func TestSetLoggerRoutesTheClientsMessages(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	redisstore.SetLogger(slog.New(slog.NewJSONHandler(logs, nil)))
	t.Cleanup(func() { redisstore.SetLogger(slog.New(slog.DiscardHandler)) })
	client, err := redisstore.NewClient("redis://127.0.0.1:1/0", "") // nothing listens on port 1
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// The pool logs after several failed dials in a row.
	testutil.WaitFor(t, "a redis client line", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = client.Ping(ctx).Err()
		return strings.Contains(logs.String(), `"msg":"redis client"`)
	})
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not JSON: %q", line)
			continue
		}
		if m["level"] != "WARN" || m["msg"] != "redis client" || !strings.Contains(m["detail"].(string), "connection refused") {
			t.Errorf("line = %s, want a WARN redis client line with the dial error", line)
		}
	}
}
