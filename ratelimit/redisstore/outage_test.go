package redisstore_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/ratelimit"
	"khproxy/ratelimit/redisstore"
	"khproxy/ratelimit/redisstore/redistest"
)

// replica is what one khproxy instance builds on a shared Redis.
type replica struct {
	limiter *ratelimit.Limiter
	memory  *ratelimit.RetryMemory
	outage  *ratelimit.Outage
	logs    *testutil.SyncBuffer
}

func newReplica(t *testing.T, srv *redistest.Server, apiKey string, limit ratelimit.Limit) *replica {
	t.Helper()
	c := newClient(t, srv)
	store, err := redisstore.New(c, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	bucket := newBucket(t, store, limit)
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	outage, err := ratelimit.NewOutage(log, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ratelimit.New(ratelimit.Options{Limit: limit, MaxWait: time.Second, Shared: bucket, Outage: outage, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return &replica{limiter: l, memory: ratelimit.NewRetryMemory(time.Minute, store, outage), outage: outage, logs: logs}
}

func (r *replica) mustWait(t *testing.T) ratelimit.Decision {
	t.Helper()
	d, err := r.limiter.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestReplicasShareTheBucket(t *testing.T) {
	srv := redistest.Start(t)
	limit := ratelimit.Limit{Every: time.Minute, Burst: 4}
	a := newReplica(t, srv, "kh_live_SHARED", limit)
	b := newReplica(t, srv, "kh_live_SHARED", limit)
	allowed := 0
	for range 5 {
		for _, r := range []*replica{a, b} {
			if r.mustWait(t).Allowed {
				allowed++
			}
		}
	}
	if allowed != limit.Burst {
		t.Errorf("two replicas let %d requests through, want the burst of %d together", allowed, limit.Burst)
	}
}

func TestRedisStoppedMidRun(t *testing.T) {
	srv := redistest.Start(t)
	limit := ratelimit.Limit{Every: time.Millisecond, Burst: 50}
	a := newReplica(t, srv, "kh_live_OUTAGE", limit)
	b := newReplica(t, srv, "kh_live_OUTAGE", limit)

	if !a.mustWait(t).Allowed {
		t.Fatal("not allowed with Redis up")
	}
	a.memory.Add("before", "k-before")
	if k, ok := b.memory.Get("before"); !ok || k != "k-before" {
		t.Fatalf("replica b sees %q, %v; want a's key", k, ok)
	}

	srv.Stop()
	for i := range 10 {
		if !a.mustWait(t).Allowed {
			t.Fatalf("request %d refused while Redis is down", i)
		}
	}
	if !a.outage.Down() {
		t.Error("no outage recorded")
	}
	if n := strings.Count(a.logs.String(), "unreachable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, a.logs)
	}
	a.memory.Add("during", "k-during")
	if k, ok := a.memory.Get("during"); !ok || k != "k-during" {
		t.Errorf("local memory during the outage: %q, %v", k, ok)
	}

	srv.Restart() // empty: no persistence
	testutil.WaitFor(t, "Redis back for replica a", func() bool {
		a.mustWait(t)
		return !a.outage.Down()
	})
	// What a learned during the outage reaches b once Redis is back.
	testutil.WaitFor(t, "the outage's keys flushed to Redis", func() bool {
		k, ok := b.memory.Get("during")
		return ok && k == "k-during"
	})
	if !strings.Contains(a.logs.String(), "reachable again") {
		t.Errorf("recovery not logged:\n%s", a.logs)
	}
	if !a.mustWait(t).Allowed {
		t.Error("not allowed after Redis came back")
	}
}
