package flight_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"khproxy/proxy/flight"
)

// The tests run in a synctest bubble: time is fake, so a grace period of an
// hour passes at once when nothing else can happen, and the time a Join
// took is exact (zero when it did not wait, the grace when it waited it
// out).

const hour = time.Hour

var (
	fp    = flight.Fingerprint("POST", "/v1/orders", "body-hash")
	other = flight.Fingerprint("POST", "/v1/orders", "other-body-hash")
)

// memory is a RetryMemory in a map, without expiry.
type memory struct {
	mu   sync.Mutex
	keys map[string]string
}

func newMemory() *memory { return &memory{keys: map[string]string{}} }

func (m *memory) Get(fp string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key, ok := m.keys[fp]
	return key, ok
}

func (m *memory) Add(fp, key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[fp] = key
}

func (m *memory) Forget(fp, key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys[fp] == key {
		delete(m.keys, fp)
	}
}

// claim joins fp as a retry that must claim an abandoned flight.
func claim(t testing.TB, reg *flight.Registry, key string) *flight.Flight {
	t.Helper()
	f, leader, err := reg.Join(context.Background(), fp, key)
	if err != nil || leader {
		t.Fatalf("Join(%s): leader %v, err %v; want a claim", key, leader, err)
	}
	return f
}

// TestJoin: who leads, who claims, who waits and for how long.
func TestJoin(t *testing.T) {
	type world struct {
		t       testing.TB
		reg     *flight.Registry
		mem     *memory
		earlier []*flight.Flight // flights in the registry before the Join
		cancel  context.CancelFunc
	}
	tests := []struct {
		name  string
		grace time.Duration
		// setup makes the flights in the registry before the Join.
		setup func(w *world)
		// meanwhile runs once the Join waits (or has returned).
		meanwhile func(w *world)
		wantErr   error
		// wantClaim is the index in earlier of the flight claimed; -1
		// means the Join leads.
		wantClaim int
		wantKey   string
		wantWait  time.Duration
	}{{
		name:      "first request leads with its own key",
		grace:     hour,
		setup:     func(w *world) {},
		wantClaim: -1, wantKey: "k-new",
	}, {
		name:  "retry claims an abandoned request",
		grace: hour,
		setup: func(w *world) {
			a := w.reg.Start(fp, "k-a")
			w.reg.Leave(a)
			w.earlier = append(w.earlier, a)
		},
		wantClaim: 0, wantKey: "k-a",
	}, {
		name:  "an abandoned request is claimed by one retry at a time",
		grace: 2 * time.Second,
		setup: func(w *world) {
			a := w.reg.Start(fp, "k-a")
			w.reg.Leave(a)
			claim(w.t, w.reg, "k-b")
		},
		wantClaim: -1, wantKey: "k-new", wantWait: 2 * time.Second,
	}, {
		name:  "a retry that gives up hands the claim on",
		grace: hour,
		setup: func(w *world) {
			a := w.reg.Start(fp, "k-a")
			w.reg.Leave(a)
			claim(w.t, w.reg, "k-b")
			w.earlier = append(w.earlier, a)
		},
		meanwhile: func(w *world) { w.reg.Unclaim(w.earlier[0]) },
		wantClaim: 0, wantKey: "k-a",
	}, {
		name:  "identical purchase waits out the grace, then leads with its own key",
		grace: 300 * time.Millisecond,
		setup: func(w *world) {
			w.earlier = append(w.earlier, w.reg.Start(fp, "k-a"))
		},
		wantClaim: -1, wantKey: "k-new", wantWait: 300 * time.Millisecond,
	}, {
		name:  "identical request whose twin's caller leaves meanwhile claims it",
		grace: hour,
		setup: func(w *world) {
			w.earlier = append(w.earlier, w.reg.Start(fp, "k-a"))
		},
		meanwhile: func(w *world) { w.reg.Leave(w.earlier[0]) },
		wantClaim: 0, wantKey: "k-a",
	}, {
		name:  "finish wakes a waiting identical request, which leads",
		grace: hour,
		setup: func(w *world) {
			w.earlier = append(w.earlier, w.reg.Start(fp, "k-a"))
		},
		meanwhile: func(w *world) { w.reg.Finish(w.earlier[0], true, nil) },
		wantClaim: -1, wantKey: "k-new",
	}, {
		name:  "context ends while waiting",
		grace: hour,
		setup: func(w *world) {
			w.earlier = append(w.earlier, w.reg.Start(fp, "k-a"))
		},
		meanwhile: func(w *world) { w.cancel() },
		wantErr:   context.Canceled,
	}, {
		name:  "unanswered key is taken without waiting",
		grace: hour,
		setup: func(w *world) {
			w.mem.Add(fp, "k-old")
			w.earlier = append(w.earlier, w.reg.Start(fp, "k-a"))
		},
		wantClaim: -1, wantKey: "k-old",
	}, {
		name:  "unanswered key is taken once",
		grace: time.Second,
		setup: func(w *world) {
			a := w.reg.Start(fp, "k-a")
			w.reg.Finish(a, false, nil)
			if b, leader, err := w.reg.Join(context.Background(), fp, "k-b"); !leader || err != nil || b.Key() != "k-a" {
				w.t.Fatalf("the first retry: leader %v, err %v; want to lead with k-a", leader, err)
			}
		},
		wantClaim: -1, wantKey: "k-new", wantWait: time.Second,
	}, {
		name:  "a request with another fingerprint is no twin",
		grace: hour,
		setup: func(w *world) {
			a := w.reg.Start(other, "k-a")
			w.reg.Leave(a)
			w.mem.Add(other, "k-old")
		},
		wantClaim: -1, wantKey: "k-new",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				w := &world{t: t, mem: newMemory(), cancel: cancel}
				w.reg = flight.NewRegistry(w.mem, tt.grace)
				tt.setup(w)

				type joined struct {
					f      *flight.Flight
					leader bool
					err    error
					took   time.Duration
				}
				done := make(chan joined, 1)
				go func() {
					start := time.Now()
					f, leader, err := w.reg.Join(ctx, fp, "k-new")
					done <- joined{f, leader, err, time.Since(start)}
				}()
				synctest.Wait()
				if tt.meanwhile != nil {
					tt.meanwhile(w)
				}
				got := <-done

				if got.took != tt.wantWait {
					t.Errorf("Join took %v, want %v", got.took, tt.wantWait)
				}
				if tt.wantErr != nil {
					if !errors.Is(got.err, tt.wantErr) || got.f != nil {
						t.Errorf("Join = %v, %v; want no flight and %v", got.f, got.err, tt.wantErr)
					}
					return
				}
				if got.err != nil {
					t.Fatalf("Join: %v", got.err)
				}
				if got.leader != (tt.wantClaim < 0) {
					t.Errorf("leader %v, want %v", got.leader, tt.wantClaim < 0)
				}
				if tt.wantClaim >= 0 && got.f != w.earlier[tt.wantClaim] {
					t.Errorf("claimed another flight than earlier[%d]", tt.wantClaim)
				}
				if got.f.Key() != tt.wantKey {
					t.Errorf("key %q, want %q", got.f.Key(), tt.wantKey)
				}
				if key, ok := w.mem.Get(fp); ok {
					t.Errorf("key %q is still kept unanswered after the Join", key)
				}
			})
		})
	}
}

// TestUnansweredKeys: which endings keep a flight's key for the next retry.
func TestUnansweredKeys(t *testing.T) {
	answer := &flight.Answer{Status: 503}
	tests := []struct {
		name string
		// end ends the flight a, abandoned and claimed when claimed is set.
		claimed  bool
		end      func(reg *flight.Registry, a *flight.Flight)
		wantKept bool
	}{{
		name:     "answer delivered: nothing kept",
		end:      func(reg *flight.Registry, a *flight.Flight) { reg.Finish(a, true, nil) },
		wantKept: false,
	}, {
		name:     "answer not delivered: key kept",
		end:      func(reg *flight.Registry, a *flight.Flight) { reg.Finish(a, false, answer) },
		wantKept: true,
	}, {
		name:     "claimed, answer not delivered: the claiming retry decides",
		claimed:  true,
		end:      func(reg *flight.Registry, a *flight.Flight) { reg.Finish(a, false, answer) },
		wantKept: false,
	}, {
		name:    "claimed, then the claiming retry's caller got nothing either",
		claimed: true,
		end: func(reg *flight.Registry, a *flight.Flight) {
			reg.Finish(a, false, answer)
			reg.Keep(a)
		},
		wantKept: true,
	}, {
		name:    "claimed, the retry gives up after an undelivered end",
		claimed: true,
		end: func(reg *flight.Registry, a *flight.Flight) {
			reg.Finish(a, false, nil)
			reg.Unclaim(a)
		},
		wantKept: true,
	}, {
		name:    "claimed, the retry gives up before an undelivered end",
		claimed: true,
		end: func(reg *flight.Registry, a *flight.Flight) {
			reg.Unclaim(a)
			reg.Finish(a, false, nil)
		},
		wantKept: true,
	}, {
		name:    "claimed, the retry gives up after a delivered end",
		claimed: true,
		end: func(reg *flight.Registry, a *flight.Flight) {
			reg.Finish(a, true, nil)
			reg.Unclaim(a)
		},
		wantKept: false,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := newMemory()
			reg := flight.NewRegistry(mem, hour)
			a := reg.Start(fp, "k-a")
			if tt.claimed {
				reg.Leave(a)
				if f := claim(t, reg, "k-b"); f != a {
					t.Fatal("the retry claimed another flight")
				}
			}
			tt.end(reg, a)
			key, kept := mem.Get(fp)
			if kept != tt.wantKept || (kept && key != "k-a") {
				t.Errorf("kept %q (%v), want k-a kept: %v", key, kept, tt.wantKept)
			}
		})
	}
}

// TestFinishHandsOverTheAnswer: a claiming retry waiting on Done gets how
// the flight ended.
func TestFinishHandsOverTheAnswer(t *testing.T) {
	answer := &flight.Answer{Status: 201, Body: []byte(`{"id":1}`)}
	tests := []struct {
		name      string
		delivered bool
		answer    *flight.Answer
	}{
		{"answer kept whole", false, answer},
		{"answer too large to keep", false, nil},
		{"the leader's caller got it after all", true, answer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := flight.NewRegistry(newMemory(), hour)
				a := reg.Start(fp, "k-a")
				reg.Leave(a)
				f := claim(t, reg, "k-b")
				ended := make(chan struct{})
				go func() {
					<-f.Done()
					close(ended)
				}()
				synctest.Wait()
				select {
				case <-ended:
					t.Fatal("Done closed before Finish")
				default:
				}
				reg.Finish(a, tt.delivered, tt.answer)
				<-ended
				if f.Delivered() != tt.delivered || f.Answer() != tt.answer {
					t.Errorf("Delivered %v, Answer %v; want %v, %v", f.Delivered(), f.Answer(), tt.delivered, tt.answer)
				}
			})
		})
	}
}

// TestStartAsksAgainWithTheKey: a claiming retry whose flight ended without
// an answer kept whole leads a new flight with that flight's key, which
// its own retry may claim in turn.
func TestStartAsksAgainWithTheKey(t *testing.T) {
	reg := flight.NewRegistry(newMemory(), hour)
	a := reg.Start(fp, "k-a")
	reg.Leave(a)
	claim(t, reg, "k-b")
	reg.Finish(a, false, nil)
	b := reg.Start(fp, a.Key())
	reg.Leave(b)
	if f := claim(t, reg, "k-c"); f != b || f.Key() != "k-a" {
		t.Errorf("claimed a flight with key %q, want the restarted one with k-a", f.Key())
	}
}

// TestFingerprint: the same method, target and body make the same
// fingerprint; any difference makes another.
func TestFingerprint(t *testing.T) {
	base := flight.Fingerprint("POST", "/v1/orders", "h1")
	tests := []struct {
		name                  string
		method, target, bodyH string
		wantSame              bool
	}{
		{"same request", "POST", "/v1/orders", "h1", true},
		{"other method", "PUT", "/v1/orders", "h1", false},
		{"other target", "POST", "/v1/orders?x=1", "h1", false},
		{"other body", "POST", "/v1/orders", "h2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := flight.Fingerprint(tt.method, tt.target, tt.bodyH)
			if (got == base) != tt.wantSame {
				t.Errorf("Fingerprint = %s, base %s; want same: %v", got, base, tt.wantSame)
			}
		})
	}
}
