package proxy_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"khproxy/emulator"
	"khproxy/internal/testutil"
)

// TestRetriesClaimAbandonedRequests: only a request whose caller has gone
// is shared with an identical one, and each with one retry at a time.
func TestRetriesClaimAbandonedRequests(t *testing.T) {
	t.Parallel()
	t.Run("a retry of a retry gets the first order", func(t *testing.T) {
		h := newEmuHarness(t)
		h.emu.SetFaults(emulator.Faults{Delay: 1500 * time.Millisecond, DelayCount: 1})
		for i := range 2 {
			if _, _, _, err := h.send(impatient, "POST", "/v1/orders", testutil.OrderBody, nil); err == nil {
				t.Fatalf("attempt %d did not time out", i+1)
			}
		}
		code, _, body := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
		if code != http.StatusCreated {
			t.Errorf("third attempt: %d %s", code, body)
		}
		if n := h.emu.OrderCount(); n != 1 {
			t.Errorf("%d orders, want 1", n)
		}
	})
	t.Run("one abandoned request, two identical newcomers", func(t *testing.T) {
		h := newEmuHarness(t)
		h.emu.SetFaults(emulator.Faults{Delay: time.Second, DelayCount: 1})
		if _, _, _, err := h.send(impatient, "POST", "/v1/orders", testutil.OrderBody, nil); err == nil {
			t.Fatal("the first attempt did not time out")
		}
		var wg sync.WaitGroup
		ids := make([]int64, 2)
		for i := range 2 {
			wg.Go(func() {
				code, _, body, err := h.send(h.proxy.Client(), "POST", "/v1/orders", testutil.OrderBody, nil)
				var order struct{ ID int64 }
				json.Unmarshal(body, &order)
				if err != nil || code != http.StatusCreated {
					t.Errorf("newcomer %d: %d %s %v", i, code, body, err)
				}
				ids[i] = order.ID
			})
		}
		wg.Wait()
		// One is the retry and gets the abandoned order; the other is a
		// purchase of its own.
		if n := h.emu.OrderCount(); n != 2 || ids[0] == ids[1] {
			t.Errorf("%d orders, ids %v; want 2 orders, one per newcomer", n, ids)
		}
	})
}
