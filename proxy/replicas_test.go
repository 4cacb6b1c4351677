package proxy_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/proxy"
	"khproxy/ratelimit"
	"khproxy/ratelimit/redisstore"
	"khproxy/ratelimit/redisstore/redistest"
	"khproxy/signer"
)

// frozenStore is a FlightStore that stops answering once frozen: what a
// replica that crashed leaves behind, its entries no longer refreshed,
// left or finished.
type frozenStore struct {
	ratelimit.FlightStore
	frozen atomic.Bool
}

var errFrozen = errors.New("replica crashed")

func (s *frozenStore) RefreshFlights(ctx context.Context, es []ratelimit.FlightEntry, ttl, keep time.Duration) error {
	if s.frozen.Load() {
		return errFrozen
	}
	return s.FlightStore.RefreshFlights(ctx, es, ttl, keep)
}

func (s *frozenStore) LeaveFlight(ctx context.Context, fp, id string) error {
	if s.frozen.Load() {
		return errFrozen
	}
	return s.FlightStore.LeaveFlight(ctx, fp, id)
}

func (s *frozenStore) FinishFlight(ctx context.Context, fp, id, key string, keepFor time.Duration) (bool, error) {
	if s.frozen.Load() {
		return false, errFrozen
	}
	return s.FlightStore.FinishFlight(ctx, fp, id, key, keepFor)
}

// replica is one khproxy in front of a shared API, sharing a Redis with
// the others.
type replica struct {
	srv   *httptest.Server
	logs  *testutil.SyncBuffer
	store *frozenStore
}

// newReplicas starts n proxies in front of api, sharing srv's Redis, with
// a heartbeat every 100 ms and entries abandoned after 600 ms: longer than
// the grace, so that a crashed owner is found only by waiting for its
// heartbeat to run out.
func newReplicas(t *testing.T, n int, redis *redistest.Server, api *upstream, timeout, budget time.Duration) []*replica {
	t.Helper()
	return newReplicasLogging(t, n, redis, api, timeout, budget, nil)
}

// newReplicasLogging is newReplicas with the Redis outages logged to
// outageLog (nil: discarded).
func newReplicasLogging(t *testing.T, n int, redis *redistest.Server, api *upstream, timeout, budget time.Duration, outageLog *slog.Logger) []*replica {
	t.Helper()
	u, err := url.Parse(api.URL + basePath)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*replica, n)
	for i := range out {
		client, err := redisstore.NewClient(redis.URL(), "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		store, err := redisstore.New(client, testKey)
		if err != nil {
			t.Fatal(err)
		}
		outage, err := ratelimit.NewOutage(outageLog, nil)
		if err != nil {
			t.Fatal(err)
		}
		fs := &frozenStore{FlightStore: store}
		board := ratelimit.NewFlightBoard(fs, outage, 100*time.Millisecond, 600*time.Millisecond, time.Minute)
		t.Cleanup(board.Close)
		srv, logs := startProxy(t, proxy.Options{
			Upstream:          u,
			Signer:            &signer.Signer{Key: testKey, Secret: signer.StaticSecret(testSecret)},
			IdempotentRoutes:  defaultRoutes(t),
			UpstreamTimeout:   timeout,
			RetryBudget:       budget,
			RetryMax:          3,
			IdempotencyWindow: time.Minute,
			RetryMemory:       ratelimit.NewRetryMemory(time.Minute, store, outage),
			Flights:           board,
		}, testSecret)
		out[i] = &replica{srv: srv, logs: logs, store: fs}
	}
	return out
}

// TestReplicasShareFlights: with Redis, a retry at any replica reuses the
// key exactly when the same retry on one replica would.
func TestReplicasShareFlights(t *testing.T) {
	t.Parallel()
	redis := redistest.Start(t)
	impatient := &http.Client{Timeout: 150 * time.Millisecond}

	t.Run("a retry through another replica while the first runs", func(t *testing.T) {
		idemModes(t, func(t *testing.T, m bool) {
			api := newIdemAPI(time.Second, m)
			r := newReplicas(t, 2, redis, newUpstream(t, api.serve), 2*time.Second, 5*time.Second)
			if _, _, _, err := post(impatient, r[0].srv.URL, inDoubtBody); err == nil {
				t.Fatal("the impatient caller got an answer")
			}
			// At once: its disconnect may not have been noticed yet.
			code, _, body, err := post(r[1].srv.Client(), r[1].srv.URL, inDoubtBody)
			if err != nil || code != http.StatusCreated || body != `{"id":1}` {
				t.Fatalf("retry at the other replica: %d %s %v, want 201 with order 1", code, body, err)
			}
			if n := api.count(); n != 1 {
				t.Errorf("%d orders, want 1", n)
			}
			// The first replica's flight ends unanswered but claimed:
			// its key is not kept, so the same order again is new.
			testutil.WaitFor(t, "the first replica's access-log line", func() bool { return strings.Contains(r[0].logs.String(), `"status":499`) })
			code, _, body, _ = post(r[0].srv.Client(), r[0].srv.URL, inDoubtBody)
			if code != http.StatusCreated || body != `{"id":2}` {
				t.Errorf("a new identical order: %d %s, want order 2", code, body)
			}
		})
	})

	t.Run("in doubt at one replica, the retry at the other gets the order", func(t *testing.T) {
		idemModes(t, func(t *testing.T, m bool) {
			api := newIdemAPI(time.Second, m)
			r := newReplicas(t, 2, redis, newUpstream(t, api.serve), 200*time.Millisecond, 400*time.Millisecond)
			code, hdr, body, err := post(r[0].srv.Client(), r[0].srv.URL, inDoubtBody)
			if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "in_doubt") {
				t.Fatalf("first: %d %s %v, want 503 in_doubt", code, body, err)
			}
			time.Sleep(time.Second) // the order is placed meanwhile
			code, hdr2, body, err := post(r[1].srv.Client(), r[1].srv.URL, inDoubtBody)
			if err != nil || code != http.StatusCreated || body != `{"id":1}` {
				t.Fatalf("retry at the other replica: %d %s %v, want 201 with order 1", code, body, err)
			}
			if hdr.Get("Idempotency-Key") != hdr2.Get("Idempotency-Key") || api.count() != 1 {
				t.Errorf("keys %q, %q and %d orders: want one key, one order", hdr.Get("Idempotency-Key"), hdr2.Get("Idempotency-Key"), api.count())
			}
		})
	})

	t.Run("a crashed owner", func(t *testing.T) {
		idemModes(t, func(t *testing.T, m bool) {
			api := newIdemAPI(time.Second, m)
			r := newReplicas(t, 2, redis, newUpstream(t, api.serve), 2*time.Second, 5*time.Second)
			go func() {
				// Once the request is on its way: crashed, no
				// heartbeat, no leave.
				for api.count() == 0 {
					time.Sleep(time.Millisecond)
				}
				r[0].store.frozen.Store(true)
			}()
			if _, _, _, err := post(impatient, r[0].srv.URL, inDoubtBody); err == nil {
				t.Fatal("the impatient caller got an answer")
			}
			code, _, body, err := post(r[1].srv.Client(), r[1].srv.URL, inDoubtBody)
			if err != nil || code != http.StatusCreated || body != `{"id":1}` {
				t.Fatalf("retry at the other replica: %d %s %v, want 201 with order 1", code, body, err)
			}
			if n := api.count(); n != 1 {
				t.Errorf("%d orders, want 1", n)
			}
		})
	})

	t.Run("twins at two replicas get two orders", func(t *testing.T) {
		api := newIdemAPI(300*time.Millisecond, true)
		r := newReplicas(t, 2, redis, newUpstream(t, api.serve), 2*time.Second, 5*time.Second)
		var wg sync.WaitGroup
		bodies := make([]string, 2)
		for i := range 2 {
			wg.Go(func() {
				code, _, body, err := post(r[i].srv.Client(), r[i].srv.URL, inDoubtBody)
				if err != nil || code != http.StatusCreated {
					t.Errorf("twin %d: %d %s %v", i, code, body, err)
				}
				bodies[i] = body
			})
		}
		wg.Wait()
		if n := api.count(); n != 2 || bodies[0] == bodies[1] {
			t.Errorf("%d orders, answers %q; want 2 orders, one each", n, bodies)
		}
	})

	t.Run("Redis down: each replica alone, and it says so", func(t *testing.T) {
		api := newIdemAPI(100*time.Millisecond, true)
		logs := &testutil.SyncBuffer{}
		r := newReplicasLogging(t, 1, redis, newUpstream(t, api.serve), 2*time.Second, 5*time.Second, slog.New(slog.NewJSONHandler(logs, nil)))
		redis.Stop()
		defer redis.Restart()
		code, _, body, err := post(r[0].srv.Client(), r[0].srv.URL, inDoubtBody)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("with Redis down: %d %s %v, want 201", code, body, err)
		}
		if !strings.Contains(logs.String(), "requests in flight until it is back") {
			t.Errorf("the outage is not logged as falling back for requests in flight:\n%s", logs)
		}
	})
}
