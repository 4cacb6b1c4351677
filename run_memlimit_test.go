package main

import (
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"

	"khproxy/internal/testutil"
)

// TestMemLimitLogged: with a cgroup limit and no GOMEMLIMIT the soft limit
// is 90% of it and the log says so; with GOMEMLIMIT the log names it.
func TestMemLimitLogged(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	root := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("134217728\n")},
	}
	logs := &testutil.SyncBuffer{}
	applyMemLimit(root, nil, slog.New(slog.NewJSONHandler(logs, nil)))
	if got, want := debug.SetMemoryLimit(-1), int64(134217728*9/10); got != want {
		t.Errorf("soft limit = %d, want %d", got, want)
	}
	if l := logLine(logs, "soft memory limit set to 90% of the cgroup memory limit", "gomemlimit_bytes", float64(120795955)); l == nil || l["cgroup_limit_bytes"] != float64(134217728) {
		t.Errorf("no log line with the limits:\n%s", logs)
	}

	logs = &testutil.SyncBuffer{}
	debug.SetMemoryLimit(before)
	applyMemLimit(root, []string{"GOMEMLIMIT=64MiB"}, slog.New(slog.NewJSONHandler(logs, nil)))
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("with GOMEMLIMIT set the soft limit changed to %d", got)
	}
	if !strings.Contains(logs.String(), `"gomemlimit":"64MiB"`) {
		t.Errorf("GOMEMLIMIT not logged:\n%s", logs)
	}
}
