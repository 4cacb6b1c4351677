package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"khproxy/emulator"
)

// purchase is one intended purchase: one caller, or two for twins.
type purchase struct {
	n       int
	label   string
	body    []byte
	ownKey  string // "": khproxy's automatic key
	twins   bool
	callers []*caller
}

// wanted is how many orders the purchase should make.
func (p *purchase) wanted() int { return len(p.callers) }

// caller is one client sending one purchase until it has a final answer.
type caller struct {
	patient  bool
	timeout  time.Duration // per attempt
	attempts []attempt
	final    *answer // nil: no final answer (unanswered)
}

// attempt is one request a caller sent.
type attempt struct {
	replica int
	status  int    // 0: no answer
	note    string // the error, or the problem's reason
	took    time.Duration
}

// answer is a caller's final answer.
type answer struct {
	status  int
	orderID int64
	label   string
	body    string // for reports, shortened
}

// sample is one reading of a replica's resources.
type sample struct {
	at     time.Duration
	rss    [2]int64
	fds    [2]int
	errors [2]error
}

// results is what drive collected.
type results struct {
	purchases []*purchase
	orders    map[string][]int64
	injected  map[string]int
	samples   []sample
	events    []string
	elapsed   time.Duration
	dead      []error // processes that died
}

// impatient callers give up on an attempt after 1.5 to 3.5 s; patient ones
// wait longer than khproxy's retry budget (30 s) and upstream timeout.
const (
	impatientMin  = 1500 * time.Millisecond
	impatientSpan = 2 * time.Second
	patientWait   = 75 * time.Second
	twinEvery     = 40
	maxRetryAfter = 5 * time.Second
)

// driver starts purchases and keeps track of their callers.
type driver struct {
	o        options
	client   *http.Client
	rng      *rand.Rand
	urls     [2]string // POST /v1/orders at each replica
	wg       sync.WaitGroup
	inflight atomic.Int64 // callers without a final answer yet
}

// start starts purchase n's callers, each at a random replica.
func (d *driver) start(ctx context.Context, n int) *purchase {
	p := newPurchase(d.o.seed, n, d.rng)
	for ci, c := range p.callers {
		d.wg.Add(1)
		d.inflight.Add(1)
		first := d.rng.IntN(2)
		crng := rand.New(rand.NewPCG(d.o.seed, uint64(p.n)<<1|uint64(ci)))
		go func() {
			defer d.wg.Done()
			defer d.inflight.Add(-1)
			c.buy(ctx, d.client, d.urls, first, p, d.o.purchaseTimeout, crng)
		}()
	}
	return p
}

// drive starts purchases for the run's duration, restarts Redis half-way,
// samples the replicas, waits for every caller and for the orders to
// settle, and collects what the emulator holds.
func (s *soak) drive(ctx context.Context) (*results, error) {
	res := &results{}
	d := &driver{o: s.o, rng: rand.New(rand.NewPCG(s.o.seed, 1)),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}}}
	defer d.client.CloseIdleConnections()
	for i, r := range s.replicas {
		d.urls[i] = "http://" + r.Addrs["http"] + "/v1/orders"
	}
	begin, dur := time.Now(), s.o.duration()
	restarted := make(chan error, 1)
	restarting := false
	defer func() {
		if restarting { // an early return: let the restart finish before close
			<-restarted
		}
	}()
	sampleT := time.NewTicker(min(max(dur/10, 2*time.Second), time.Minute))
	defer sampleT.Stop()
	startT := time.NewTicker(time.Duration(float64(time.Second) / s.o.rate))
	defer startT.Stop()
	restart := time.NewTimer(dur / 2)
	defer restart.Stop()
	end := time.NewTimer(dur)
	defer end.Stop()
	res.samples = append(res.samples, s.sample(0))
loop:
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-end.C:
			break loop
		case <-restart.C:
			// In the background, so that purchases keep starting while
			// Redis is down.
			at := time.Since(begin).Round(time.Second)
			s.logf("%v: restarting Redis", at)
			res.events = append(res.events, fmt.Sprintf("Redis stopped at %v, started again %v later", at, s.o.redisDown))
			restarting = true
			go func() { restarted <- s.restartRedis(s.o.redisDown) }()
		case <-sampleT.C:
			sm := s.sample(time.Since(begin))
			res.samples = append(res.samples, sm)
			s.logf("%v: %d purchases started, %d callers waiting; rss %s/%s MiB, fds %d/%d",
				sm.at.Round(time.Second), len(res.purchases), d.inflight.Load(),
				mib(sm.rss[0]), mib(sm.rss[1]), sm.fds[0], sm.fds[1])
		case <-startT.C:
			res.purchases = append(res.purchases, d.start(ctx, len(res.purchases)))
		}
	}
	s.logf("%v: %d purchases started; waiting for %d callers", time.Since(begin).Round(time.Second), len(res.purchases), d.inflight.Load())
	d.wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if restarting {
		restarting = false
		if err := <-restarted; err != nil {
			return nil, fmt.Errorf("restarting Redis: %w", err)
		}
	}
	res.samples = append(res.samples, s.sample(time.Since(begin)))
	return res, s.collect(ctx, res, begin)
}

// collect waits for the orders to settle, then records which processes
// died, the orders per label and the faults the emulator injected.
func (s *soak) collect(ctx context.Context, res *results, begin time.Time) error {
	// khproxy may still be retrying for a caller that left: wait until no
	// order has been added for a while.
	if err := s.settle(ctx); err != nil {
		return err
	}
	res.elapsed = time.Since(begin)
	for _, err := range []error{s.replicas[0].Alive(), s.replicas[1].Alive(), s.emu.Alive()} {
		if err != nil {
			res.dead = append(res.dead, err)
		}
	}
	var err error
	if res.orders, err = s.emulatorOrders(ctx); err != nil {
		return err
	}
	var st struct {
		Injected map[string]int `json:"injected_faults"`
	}
	if err := s.control(ctx, "state", &st); err != nil {
		return err
	}
	res.injected = st.Injected
	return nil
}

// settle waits until the emulator's order count has not changed for the
// upstream timeout plus 2 s, at most for khproxy's retry budget (30 s)
// plus that.
func (s *soak) settle(ctx context.Context) error {
	quiet := s.o.upstreamTimeout + 2*time.Second
	deadline := time.Now().Add(30*time.Second + quiet)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		var st struct {
			Orders int `json:"orders"`
		}
		if err := s.control(ctx, "state", &st); err != nil {
			return err
		}
		if st.Orders != last {
			last, since = st.Orders, time.Now()
		} else if time.Since(since) >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// sample reads both replicas' resident memory and open descriptors.
func (s *soak) sample(at time.Duration) sample {
	sm := sample{at: at}
	for i, p := range s.replicas {
		_, rss, err := p.Memory()
		fds, ferr := p.FDs()
		if err == nil {
			err = ferr
		}
		sm.rss[i], sm.fds[i], sm.errors[i] = rss, fds, err
	}
	return sm
}

func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }

// newPurchase makes purchase n: every twinEvery-th a pair of twins (two
// patient callers, automatic keys), else one caller with its own key or
// none, patient or not, at random.
func newPurchase(seed uint64, n int, rng *rand.Rand) *purchase {
	p := &purchase{n: n, label: fmt.Sprintf("soak-%d-%d", seed, n), twins: n%twinEvery == twinEvery-1}
	p.body = []byte(`{"product_id":42,"billing_cycle":"monthly","label":"` + p.label + `"}`)
	if p.twins {
		p.callers = []*caller{{patient: true, timeout: patientWait}, {patient: true, timeout: patientWait}}
		return p
	}
	if rng.IntN(2) == 0 {
		p.ownKey = fmt.Sprintf("soak-%d-%d-%016x", seed, n, rng.Uint64())
	}
	c := &caller{patient: rng.IntN(2) == 0, timeout: patientWait}
	if !c.patient {
		c.timeout = impatientMin + time.Duration(rng.Int64N(int64(impatientSpan)))
	}
	p.callers = []*caller{c}
	return p
}

// buy sends p's identical bytes until a final answer or until timeout,
// starting at replica first and switching replicas half the time.
func (c *caller) buy(ctx context.Context, client *http.Client, urls [2]string, first int, p *purchase, timeout time.Duration, rng *rand.Rand) {
	deadline := time.Now().Add(timeout)
	replica := first
	for i := 0; ; i++ {
		if i > 0 && rng.IntN(2) == 0 {
			replica = 1 - replica
		}
		a, ans, wait := c.try(ctx, client, urls[replica], p)
		a.replica = replica
		c.attempts = append(c.attempts, a)
		if ans != nil {
			c.final = ans
			return
		}
		if wait == 0 {
			wait = 200*time.Millisecond + time.Duration(rng.Int64N(int64(800*time.Millisecond)))
		}
		if time.Now().Add(wait).After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// try sends one attempt. A final answer is returned as ans; otherwise
// wait is the Retry-After asked for (0: none).
func (c *caller) try(ctx context.Context, client *http.Client, url string, p *purchase) (a attempt, ans *answer, wait time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	defer func() { a.took = time.Since(start) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(p.body))
	if err != nil {
		return attempt{note: err.Error()}, nil, 0
	}
	req.Header.Set("Content-Type", "application/json")
	if p.ownKey != "" {
		req.Header.Set(emulator.HeaderIdempotencyKey, p.ownKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return attempt{note: "no answer: " + err.Error()}, nil, 0
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return attempt{status: resp.StatusCode, note: "body broke off: " + err.Error()}, nil, 0
	}
	var doc struct {
		ID     int64  `json:"id"`
		Label  string `json:"label"`
		Reason string `json:"reason"`
		Kind   string `json:"type"`
	}
	_ = json.Unmarshal(body, &doc)
	a = attempt{status: resp.StatusCode, note: doc.Reason}
	if doc.Reason == "" && resp.StatusCode >= 400 {
		a.note = doc.Kind
	}
	if retryable(resp.StatusCode, doc.Reason) {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			wait = min(time.Duration(s)*time.Second, maxRetryAfter)
		}
		return a, nil, wait
	}
	return a, &answer{status: resp.StatusCode, orderID: doc.ID, label: doc.Label, body: shorten(string(body), 300)}, 0
}

// retryable reports whether an answer leaves the purchase in doubt, so
// that a careful caller resends it: a 5xx, 408, 425, 429, or 409
// request_in_progress.
func retryable(status int, reason string) bool {
	switch {
	case status >= 500, status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusTooManyRequests:
		return true
	case status == http.StatusConflict:
		return reason == "request_in_progress"
	}
	return false
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
