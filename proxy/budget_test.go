package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"khproxy/internal/httpserve"
	"khproxy/internal/testutil"
	"khproxy/proxy"
)

// slowUpstream holds every request until release is closed, counting how
// many it holds at once.
type slowUpstream struct {
	release       chan struct{}
	holding, most atomic.Int32
	mu            sync.Mutex
	arrived       int
}

func newSlowUpstream() *slowUpstream { return &slowUpstream{release: make(chan struct{})} }

func (s *slowUpstream) handle(w http.ResponseWriter, r *http.Request) {
	n := s.holding.Add(1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	s.mu.Lock()
	s.arrived++
	s.mu.Unlock()
	<-s.release
	s.holding.Add(-1)
	io.WriteString(w, `{"ok":true}`)
}

func (s *slowUpstream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrived
}

// TestBodyBudgetBoundsMemory sends many concurrent large uploads to a slow
// upstream: the bytes reserved for bodies never exceed the budget, the
// uploads beyond it wait for room instead of being read, and all succeed
// once the upstream answers.
func TestBodyBudgetBoundsMemory(t *testing.T) {
	const (
		size    = 1 << 20
		budget  = 4 << 20
		clients = 12
	)
	for _, chunked := range []bool{false, true} {
		name := map[bool]string{false: "Content-Length", true: "chunked"}[chunked]
		t.Run(name, func(t *testing.T) {
			up := newSlowUpstream()
			s := serve(t, up.handle, httpserve.Server{ReadTimeout: time.Minute}, func(o *proxy.Options) {
				o.MaxInflightBytes = budget
				o.BudgetWait = time.Minute
			})
			body := bytes.Repeat([]byte("x"), size)
			var wg sync.WaitGroup
			statuses := make([]int, clients)
			for i := range clients {
				wg.Go(func() {
					var r io.Reader = bytes.NewReader(body)
					if chunked {
						r = io.MultiReader(r) // unknown length: sent chunked
					}
					req, _ := http.NewRequest("POST", "http://"+s.addr+"/v1/upload", r)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					statuses[i] = resp.StatusCode
				})
			}
			// Every upload has arrived at the proxy: those that fit went
			// upstream, the others wait for room.
			testutil.WaitFor(t, "uploads held upstream or waiting for room", func() bool {
				st := s.p.BodyBudget()
				return up.count()+st.Waiting == clients
			})
			st := s.p.BodyBudget()
			if st.Peak > budget || st.Reserved > budget {
				t.Errorf("reserved %d, peak %d: over the budget %d", st.Reserved, st.Peak, budget)
			}
			// Room is taken as the bytes arrive, so uploads that each
			// hold part of theirs may share the budget: at least one
			// gets through at a time, never more than fit.
			if n := up.count(); n < 1 || n > budget/size {
				t.Errorf("%d uploads reached the upstream at once, want 1 to %d: the budget's worth", n, budget/size)
			}
			close(up.release)
			wg.Wait()
			for i, code := range statuses {
				if code != http.StatusOK {
					t.Errorf("upload %d: status %d, want 200 once room came free", i, code)
				}
			}
			st = s.p.BodyBudget()
			if st.Peak > budget || int(up.most.Load())*size > budget {
				t.Errorf("peak reserved %d, %d uploads upstream at once: over the budget %d", st.Peak, up.most.Load(), budget)
			}
			testutil.WaitFor(t, "every body's room given back", func() bool { return s.p.BodyBudget().Reserved == 0 })
		})
	}
}

// TestBodyBudgetRefusals: what can never fit gets 413 before its body is
// read; what does not fit within the wait gets 503 with Retry-After, and its
// body is not read either. Nothing refused is sent upstream.
func TestBodyBudgetRefusals(t *testing.T) {
	t.Run("larger than the budget, declared", func(t *testing.T) {
		s := serve(t, nil, httpserve.Server{ReadTimeout: time.Minute}, func(o *proxy.Options) { o.MaxInflightBytes = 1000 })
		c := s.dial(t)
		// Headers only: the answer must come without the body.
		io.WriteString(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 1500\r\n\r\n")
		resp, body := readResponse(t, bufio.NewReader(c), "POST")
		p := assertProblem(t, resp, body, http.StatusRequestEntityTooLarge, "body_too_large")
		if !strings.Contains(fmt.Sprint(p["detail"]), "memory budget") {
			t.Errorf("detail %q does not say it is the memory budget", p["detail"])
		}
		if n := len(s.up.all()); n != 0 {
			t.Errorf("%d requests reached the upstream", n)
		}
	})
	t.Run("larger than the budget, chunked", func(t *testing.T) {
		s := serve(t, nil, httpserve.Server{ReadTimeout: time.Minute}, func(o *proxy.Options) { o.MaxInflightBytes = 64 << 10 })
		c := s.dial(t)
		chunk := strings.Repeat("x", 100<<10)
		fmt.Fprintf(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk)
		resp, body := readResponse(t, bufio.NewReader(c), "POST")
		assertProblem(t, resp, body, http.StatusRequestEntityTooLarge, "body_too_large")
		if n := len(s.up.all()); n != 0 {
			t.Errorf("%d requests reached the upstream", n)
		}
	})
	t.Run("no room within the wait", func(t *testing.T) {
		up := newSlowUpstream()
		defer close(up.release)
		s := serve(t, up.handle, httpserve.Server{ReadTimeout: time.Minute}, func(o *proxy.Options) {
			o.MaxInflightBytes = 1000
			o.BudgetWait = 100 * time.Millisecond
		})
		first := s.dial(t)
		fmt.Fprintf(first, "POST /v1/first HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n%s", strings.Repeat("x", 800))
		testutil.WaitFor(t, "the first upload upstream", func() bool { return up.count() == 1 })
		c := s.dial(t)
		fmt.Fprintf(c, "POST /v1/second HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n%s", strings.Repeat("x", 800))
		resp, body := readResponse(t, bufio.NewReader(c), "POST")
		assertProblem(t, resp, body, http.StatusServiceUnavailable, "overloaded")
		if got := resp.Header.Get("Retry-After"); got == "" {
			t.Error("503 without Retry-After")
		}
		if s.up.hasArrival("/v1/second") {
			t.Error("the refused upload reached the upstream")
		}
		if st := s.p.BodyBudget(); st.Reserved != 800 || st.Waiting != 0 {
			t.Errorf("budget %+v, want only the first body's 800 bytes reserved and nobody waiting", st)
		}
	})
}

// TestDefaultBodyLimits: Options left zero take bodies of up to 1 MiB, held
// within a 2 MiB budget (config's defaults, sized for a sidecar).
func TestDefaultBodyLimits(t *testing.T) {
	s := serve(t, nil, httpserve.Server{ReadTimeout: time.Minute}, func(o *proxy.Options) {
		o.MaxBodyBytes, o.MaxInflightBytes = 0, 0
	})
	if got, want := s.p.BodyBudget().Limit, int64(2<<20); got != want {
		t.Errorf("budget = %d bytes, want %d", got, want)
	}
	t.Run("at the body limit", func(t *testing.T) {
		resp, err := http.Post("http://"+s.addr+"/v1/upload", "application/octet-stream", bytes.NewReader(make([]byte, 1<<20)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d, want 200", resp.StatusCode)
		}
	})
	t.Run("over the body limit", func(t *testing.T) {
		c := s.dial(t)
		fmt.Fprintf(c, "POST /v1/over HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 1<<20+1)
		resp, body := readResponse(t, bufio.NewReader(c), "POST")
		p := assertProblem(t, resp, body, http.StatusRequestEntityTooLarge, "body_too_large")
		if !strings.Contains(fmt.Sprint(p["detail"]), "1048576 bytes") {
			t.Errorf("detail %q does not name the 1 MiB limit", p["detail"])
		}
		if s.up.hasArrival("/v1/over") {
			t.Error("the refused upload reached the upstream")
		}
	})
}

// TestBodyRoomHeldUntilLastAttempt: a retried request keeps its body's room
// while attempts may still need it, and gives it back after the last.
func TestBodyRoomHeldUntilLastAttempt(t *testing.T) {
	var s *served
	var attempts atomic.Int32
	var reservedDuringRetry atomic.Int64
	s = serve(t, func(w http.ResponseWriter, r *http.Request) {
		if attempts.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		reservedDuringRetry.Store(s.p.BodyBudget().Reserved)
		io.WriteString(w, `{"ok":true}`)
	}, httpserve.Server{ReadTimeout: time.Minute}, withRetries(2))
	c := s.dial(t)
	body := strings.Repeat("y", 5000)
	fmt.Fprintf(c, "PUT /v1/things/1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	resp, _ := readResponse(t, bufio.NewReader(c), "PUT")
	if resp.StatusCode != http.StatusOK || attempts.Load() != 2 {
		t.Fatalf("status %d after %d attempts, want 200 after 2", resp.StatusCode, attempts.Load())
	}
	if got := reservedDuringRetry.Load(); got < int64(len(body)) {
		t.Errorf("reserved during the retry = %d, want the body's %d still held", got, len(body))
	}
	testutil.WaitFor(t, "the room given back", func() bool { return s.p.BodyBudget().Reserved == 0 })
}

// TestRefusedUploadSeesTheAnswer: a client that sends its whole body before
// it reads, a body khproxy refused unread and far larger than what the
// sockets' buffers hold, can send it all and then read the answer: the rest
// of the body is read and dropped after the answer, instead of the
// connection being reset under the client's feet.
func TestRefusedUploadSeesTheAnswer(t *testing.T) {
	up := newSlowUpstream()
	defer close(up.release)
	s := serve(t, up.handle, httpserve.Server{ReadTimeout: time.Minute}, func(o *proxy.Options) {
		o.MaxInflightBytes = 32 << 20
		o.MaxBodyBytes = 64 << 20
		o.BudgetWait = 100 * time.Millisecond
	})
	post := func(size int) (int, error) {
		c := s.dial(t)
		fmt.Fprintf(c, "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
		if _, err := c.Write(make([]byte, size)); err != nil {
			return 0, fmt.Errorf("sending the body: %w", err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, fmt.Errorf("reading the answer: %w", err)
		}
		return resp.StatusCode, nil
	}
	if code, err := post(40 << 20); err != nil || code != http.StatusRequestEntityTooLarge {
		t.Errorf("larger than the budget: %d, %v; want 413", code, err)
	}
	go post(20 << 20) // takes most of the budget, held upstream
	testutil.WaitFor(t, "the first upload upstream", func() bool { return up.count() == 1 })
	if code, err := post(24 << 20); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("no room: %d, %v; want 503", code, err)
	}
}
