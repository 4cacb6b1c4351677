package audit_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"khproxy/audit"
	khtestutil "khproxy/internal/testutil"
	"khproxy/proxy"
)

// TestRequiredTurnsWritesAwayWhileTheLogFails writes to /dev/full, where
// every write fails (ENOSPC).
func TestRequiredTurnsWritesAwayWhileTheLogFails(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	for _, required := range []bool{false, true} {
		logs := &khtestutil.SyncBuffer{}
		reg := prometheus.NewRegistry()
		l, err := audit.Open("/dev/full", audit.Options{Required: required, Logger: newLogger(logs), Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		write := &proxy.Call{ID: "a", Method: "POST", Target: "/v1/orders", Route: "/v1/orders"}
		read := &proxy.Call{ID: "b", Method: "GET", Target: "/v1/me", Route: "/v1/me"}
		if err := l.Admit(context.Background(), write); err != nil {
			t.Fatalf("required=%v: first write call refused before any failure: %v", required, err)
		}
		l.Record(write, &proxy.Outcome{Status: 201, Sent: true, UpstreamStatus: 201})
		if !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), "audit log write failed") {
			t.Errorf("required=%v: failure not logged at ERROR:\n%s", required, logs)
		}
		failures := gathered(t, reg, "khproxy_audit_write_failures_total")
		if failures != 1 {
			t.Errorf("required=%v: %v failures counted, want 1", required, failures)
		}
		err = l.Admit(context.Background(), write)
		var e *proxy.Error
		switch {
		case required && (!errors.As(err, &e) || e.Kind != proxy.KindAuditUnavailable):
			t.Errorf("required: next write call: %v, want audit_unavailable", err)
		case !required && err != nil:
			t.Errorf("not required: next write call refused: %v", err)
		}
		if err := l.Admit(context.Background(), read); err != nil {
			t.Errorf("required=%v: a read refused: %v", required, err)
		}
		l.Close()
	}
}

func newLogger(w *khtestutil.SyncBuffer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// gathered returns the value of the counter name in reg.
func gathered(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
