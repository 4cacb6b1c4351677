package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// idemAPI is a test double of the API's idempotency store (spec §2): the
// first request with a key places an order, which takes hold before its
// answer is stored (and sent); a request with the key of a stored answer
// gets it again. What a request with the key of an order still being
// placed gets is not documented: inProgress409 answers 409
// request_in_progress with Retry-After, otherwise it waits and gets the
// stored answer once there is one. khproxy must be right under both.
type idemAPI struct {
	hold          time.Duration // how long placing an order takes
	inProgress409 bool
	retryAfter    string // Retry-After of the 409; "" for none

	mu     sync.Mutex
	orders map[string]*idemOrder // by Idempotency-Key
	n      int
	keys   []string // the key of every request, in order
}

type idemOrder struct {
	id    int
	ready chan struct{} // closed once the answer is stored
}

func newIdemAPI(hold time.Duration, inProgress409 bool) *idemAPI {
	return &idemAPI{hold: hold, inProgress409: inProgress409, retryAfter: "0", orders: map[string]*idemOrder{}}
}

// modes runs f for both answers to a key in progress.
func idemModes(t *testing.T, f func(t *testing.T, inProgress409 bool)) {
	for _, m := range []bool{true, false} {
		name := "stored answer when in progress"
		if m {
			name = "409 when in progress"
		}
		t.Run(name, func(t *testing.T) { f(t, m) })
	}
}

func (a *idemAPI) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	a.mu.Lock()
	a.keys = append(a.keys, key)
	o, seen := a.orders[key]
	if !seen {
		a.n++
		o = &idemOrder{id: a.n, ready: make(chan struct{})}
		a.orders[key] = o
	}
	a.mu.Unlock()
	if !seen {
		// Placed: the order exists whether or not the answer arrives.
		time.Sleep(a.hold)
		close(o.ready)
		a.answer(w, o, false)
		return
	}
	select {
	case <-o.ready:
	default:
		if a.inProgress409 {
			if a.retryAfter != "" {
				w.Header().Set("Retry-After", a.retryAfter)
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"type":"idempotency_conflict","status":409,"reason":"request_in_progress"}`)
			return
		}
		<-o.ready
	}
	a.answer(w, o, true)
}

func (a *idemAPI) answer(w http.ResponseWriter, o *idemOrder, replayed bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", fmt.Sprintf("api-req-%d", o.id))
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"id":%d}`, o.id)
}

// count is the number of orders placed.
func (a *idemAPI) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// distinctKeys is the number of keys the API saw.
func (a *idemAPI) distinctKeys() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[string]bool{}
	for _, k := range a.keys {
		seen[k] = true
	}
	return len(seen)
}

// post sends an order body through srvURL with client and returns status,
// headers and body; err is the client's.
func post(client *http.Client, srvURL, body string) (int, http.Header, string, error) {
	resp, err := client.Post(srvURL+"/v1/orders", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), err
}
