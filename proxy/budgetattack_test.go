package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"khproxy/internal/httpserve"
	"khproxy/internal/testutil"
	"khproxy/proxy"
)

// TestStalledBodiesHoldLittle repeats the attack of issue 19: clients that
// declare large bodies and send a byte or nothing, or start chunked uploads
// and stall, must not fill the body budget. Room follows the bytes that
// arrived, so an order sent meanwhile goes through at once, instead of
// waiting KH_MAX_INFLIGHT_WAIT for room and getting 503.
func TestStalledBodiesHoldLittle(t *testing.T) {
	const budget = 256 << 10
	tests := []struct {
		name    string
		stalled int
		request string // sent by each stalled client; nothing follows
	}{
		{"declared 128 KiB, headers only", 2, "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 131072\r\n\r\n"},
		{"declared 128 KiB, one byte sent", 2, "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 131072\r\n\r\nx"},
		{"chunked, one byte sent", 10, "POST /v1/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, nil, httpserve.Server{ReadTimeout: time.Minute}, func(o *proxy.Options) {
				o.MaxInflightBytes = budget
				o.MaxBodyBytes = budget
				o.BudgetWait = 3 * time.Second
			})
			for range tt.stalled {
				io.WriteString(s.dial(t), tt.request)
			}
			if strings.HasSuffix(tt.request, "\r\n\r\n") {
				// Nothing to see in the budget: give the server the time
				// to read the headers.
				time.Sleep(100 * time.Millisecond)
			} else {
				testutil.WaitFor(t, "the stalled bodies' first bytes read", func() bool {
					st := s.p.BodyBudget()
					return st.Reserved+int64(st.Waiting) >= int64(tt.stalled)
				})
			}
			c := s.dial(t)
			c.SetDeadline(time.Now().Add(2 * time.Second)) // less than the wait for room
			io.WriteString(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
			resp, body := readResponse(t, bufio.NewReader(c), "POST")
			if resp.StatusCode != http.StatusOK {
				t.Errorf("order beside %d stalled uploads: status %d %s, want 200 at once", tt.stalled, resp.StatusCode, body)
			}
			st := s.p.BodyBudget()
			if limit := int64(tt.stalled) * 512; st.Peak > limit+512 {
				t.Errorf("stalled uploads held %d bytes of room at the peak, want at most %d: room for what arrived", st.Peak, limit+512)
			}
		})
	}
}

// TestExpectContinueFullBudget: a request that waits for 100 Continue is
// answered 503 at once when the budget has no room for it, before it sends
// its body, not after KH_MAX_INFLIGHT_WAIT; and 413 when its declared body
// is larger than the limit.
func TestExpectContinueFullBudget(t *testing.T) {
	up := newSlowUpstream()
	defer close(up.release)
	s := serve(t, up.handle, httpserve.Server{ReadTimeout: time.Minute}, func(o *proxy.Options) {
		o.MaxInflightBytes = 1000
		o.MaxBodyBytes = 1000
		o.BudgetWait = 30 * time.Second
	})
	first := s.dial(t)
	fmt.Fprintf(first, "POST /v1/first HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n%s", strings.Repeat("x", 1000))
	testutil.WaitFor(t, "the first upload upstream", func() bool { return up.count() == 1 })

	for _, tt := range []struct {
		name   string
		length int
		status int
		kind   string
	}{
		{"no room now", 500, http.StatusServiceUnavailable, "overloaded"},
		{"over the limit", 1001, http.StatusRequestEntityTooLarge, "body_too_large"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := s.dial(t)
			// Well within the wait for room: the answer must not wait for it.
			c.SetDeadline(time.Now().Add(3 * time.Second))
			fmt.Fprintf(c, "POST /v1/second HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", tt.length)
			resp, body := readResponse(t, bufio.NewReader(c), "POST")
			assertProblem(t, resp, body, tt.status, tt.kind)
			if tt.status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if s.up.hasArrival("/v1/second") {
				t.Error("the refused request reached the upstream")
			}
		})
	}
}

// TestExpectContinueAdmitted: with room in the budget, a request that waits
// for 100 Continue is told to go on, a chunked one too when the body limit
// is larger than the budget (its size is known only once it arrived).
func TestExpectContinueAdmitted(t *testing.T) {
	s := serve(t, nil, httpserve.Server{ReadTimeout: time.Minute}, func(o *proxy.Options) {
		o.MaxInflightBytes = 1000
		o.MaxBodyBytes = 4000
	})
	for _, framing := range []string{"Content-Length: 2", "Transfer-Encoding: chunked"} {
		t.Run(framing, func(t *testing.T) {
			c := s.dial(t)
			br := bufio.NewReader(c)
			fmt.Fprintf(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\n%s\r\nExpect: 100-continue\r\n\r\n", framing)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusContinue {
				t.Fatalf("status %d, want 100 Continue", resp.StatusCode)
			}
			if strings.HasPrefix(framing, "Transfer") {
				io.WriteString(c, "2\r\n{}\r\n0\r\n\r\n")
			} else {
				io.WriteString(c, "{}")
			}
			resp, body := readResponse(t, br, "POST")
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d %s, want 200", resp.StatusCode, body)
			}
		})
	}
}
