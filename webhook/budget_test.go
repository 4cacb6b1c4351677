package webhook_test

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"khproxy/internal/bytebudget"
	"khproxy/internal/testutil"
	"khproxy/webhook"
)

// dialRig opens a raw connection to the receiver, closed at the test's end.
func dialRig(t testing.TB, r *rig) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.rcv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// TestStalledDeliveriesWithinBudget repeats the attack of issue 19, scaled
// down: deliveries whose signature header merely parses (the signature is
// zeros), each sending part of a large body and stalling, hold room only
// for the bytes that arrived, within the receiver's budget; once it is
// full, a delivery gets 503 with Retry-After, so the sender retries, rather
// than the receiver's memory growing with every stalled one.
func TestStalledDeliveriesWithinBudget(t *testing.T) {
	const budget = 64 << 10
	b := bytebudget.New(budget)
	r := newRig(t, func(rc *webhook.Receiver) {
		rc.Budget = b
		rc.BudgetWait = 200 * time.Millisecond
	})
	// Three deliveries of 20 KiB and a byte send all but their last byte
	// and stall: 60 KiB of the budget are theirs, less than 4 KiB left.
	forged := signed(strings.Repeat("0", 64))
	const stalled = 20 << 10
	for range 3 {
		c := dialRig(t, r)
		fmt.Fprintf(c, "POST /hooks HTTP/1.1\r\nHost: x\r\n%s: %s\r\nContent-Length: %d\r\n\r\n%s",
			webhook.DefaultHeader, forged, stalled+1, strings.Repeat("x", stalled))
	}
	testutil.WaitFor(t, "the stalled deliveries' bytes read", func() bool { return b.Stats().Reserved >= 3*stalled })

	// A genuine delivery of 8 KiB finds no room within the wait.
	payload := `{"type":"order.paid","data":"` + strings.Repeat("p", 8<<10) + `"}`
	mac := hmac.New(sha256.New, []byte(secretCurrent))
	fmt.Fprintf(mac, "%d.%s", vecT, payload)
	resp, body := r.post(t, "/hooks", sigHeader(signed(hex.EncodeToString(mac.Sum(nil)))), payload)
	wantProblem(t, resp, body, http.StatusServiceUnavailable, webhook.OutcomeOverloaded)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if st := b.Stats(); st.Peak > budget {
		t.Errorf("peak %d bytes held, over the budget %d", st.Peak, budget)
	}
	if n := len(r.app.requests()); n != 0 {
		t.Errorf("%d deliveries reached the app", n)
	}
}

// TestHeaderJudgedBeforeBody: a delivery whose signature header is stale or
// from the future is refused before its body is read: a client that sends
// the headers of a large delivery and nothing more gets its answer at once.
func TestHeaderJudgedBeforeBody(t *testing.T) {
	r := newRig(t)
	for _, tt := range []struct {
		name string
		t    int64
		want webhook.Outcome
	}{
		{"stale", int64(vecT) - 3600, webhook.OutcomeStale},
		{"future", int64(vecT) + 3600, webhook.OutcomeFuture},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRig(t, r)
			c.SetDeadline(time.Now().Add(3 * time.Second))
			fmt.Fprintf(c, "POST /hooks HTTP/1.1\r\nHost: x\r\n%s: t=%s,v1=%s\r\nContent-Length: %d\r\n\r\n",
				webhook.DefaultHeader, strconv.FormatInt(tt.t, 10), strings.Repeat("0", 64), 1<<20)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			wantProblem(t, resp, body, http.StatusBadRequest, tt.want)
		})
	}
}
