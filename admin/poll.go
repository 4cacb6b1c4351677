package admin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Poller runs a Check in the background, about every Interval (each wait is
// jittered by up to a tenth of it, so that many replicas started together
// do not poll in step), and answers its own Check from the last result: the
// checked service sees one call per interval however often anyone asks, and
// a gauge can show the result. Create it with NewPoller and start Run; it is
// safe for concurrent use.
type Poller struct {
	name     string
	check    Check
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger
	now      func() time.Time
	up       prometheus.Gauge // nil: none

	mu  sync.Mutex
	at  time.Time // when the last result arrived; zero before the first
	err error     // the last result
}

// PollOptions configure NewPoller. Every zero value selects the default
// documented on its field.
type PollOptions struct {
	// Interval is the mean time between the end of one check and the start
	// of the next; 0 means 5s. Each wait is jittered by up to ±10%.
	Interval time.Duration
	// Timeout bounds one check; 0 means 2s or Interval if shorter.
	Timeout time.Duration
	// Logger is told when the result changes (failing, or failing with a
	// different error: warn, passing again: info); nil discards.
	Logger *slog.Logger
	// Up, when not nil, is set to 1 after each passing check and to 0 after
	// each failing one; it is 0 until the first result.
	Up prometheus.Gauge
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewPoller returns a Poller for c, which is not checked until Run starts.
// name starts every error the Poller returns and names it in the log.
func NewPoller(name string, c Check, opts PollOptions) *Poller {
	p := &Poller{name: name, check: c, interval: opts.Interval, timeout: opts.Timeout, log: opts.Logger, now: opts.Now, up: opts.Up}
	if p.interval <= 0 {
		p.interval = 5 * time.Second
	}
	if p.timeout <= 0 {
		p.timeout = min(2*time.Second, p.interval)
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// Run checks at once and then about every interval until ctx is done. Call
// it once, in its own goroutine.
func (p *Poller) Run(ctx context.Context) {
	t := time.NewTimer(p.interval)
	defer t.Stop()
	for {
		p.once(ctx)
		t.Reset(jitter(p.interval))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// jitter returns d changed by a random amount of up to ±10%.
func jitter(d time.Duration) time.Duration {
	spread := d / 10
	return d - spread + rand.N(2*spread+1)
}

// maxWait is the longest wait jitter returns for d.
func maxWait(d time.Duration) time.Duration { return d + d/10 }

// once runs the check and records its result.
func (p *Poller) once(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	err := p.check.Check(cctx)
	cancel()
	if ctx.Err() != nil {
		return // stopping: an error now says nothing about the service
	}
	p.mu.Lock()
	first := p.at.IsZero()
	was := p.err
	p.at, p.err = p.now(), err
	p.mu.Unlock()
	if p.up != nil {
		if err != nil {
			p.up.Set(0)
		} else {
			p.up.Set(1)
		}
	}
	switch {
	case err != nil && (first || was == nil || was.Error() != err.Error()):
		p.log.Warn("health check failing", "check", p.name, "error", err)
	case err == nil && !first && was != nil:
		p.log.Info("health check passing again", "check", p.name)
	}
}

// Check returns the last result: nil when the last check, finished within
// the longest jittered interval plus timeout, passed. It errs before the first result
// (also when Run was never started) and when results stopped coming.
func (p *Poller) Check(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.at.IsZero():
		return fmt.Errorf("%s: not checked yet", p.name)
	case p.err != nil:
		return fmt.Errorf("%s: %w", p.name, p.err)
	}
	if age := p.now().Sub(p.at); age > maxWait(p.interval)+p.timeout {
		return fmt.Errorf("%s: no result for %s", p.name, age.Round(time.Second))
	}
	return nil
}

// HTTPCheck is a Check that sends GET URL, like the KernelHost API's
// unsigned GET /v1/health, and passes on a 2xx answer and on a 429: a 429
// means the service answered and is only limiting the caller (the API's
// per-IP limit counts health polls too), which says it is reachable. It is
// safe for concurrent use.
type HTTPCheck struct {
	// Client sends the request; nil means http.DefaultClient. Its transport
	// decides proxies and TLS.
	Client *http.Client
	// URL is what is fetched. It should hold no credentials: errors show it.
	URL string
}

// Check sends the request and judges the answer.
func (c HTTPCheck) Check(ctx context.Context) error {
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err // a *url.Error: it names the method and URL
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close()
	if (resp.StatusCode < 200 || resp.StatusCode > 299) && resp.StatusCode != http.StatusTooManyRequests {
		return fmt.Errorf("GET %s: %s", c.URL, resp.Status)
	}
	return nil
}
