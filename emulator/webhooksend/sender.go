// Package webhooksend is the KernelHost API emulator's outbound webhook
// sender: it signs events and POSTs them to the receivers' URLs the way a
// production sender does, and vets the URLs it is given.
//
// Each URL has its own queue and worker, so a slow or failing receiver
// never delays another; first attempts go out in the order the events were
// sent. A failed delivery waits for its retry (Options.Retries) without
// holding up the deliveries behind it. At most 1024 deliveries are pending
// (beyond that a delivery is recorded as failed, never blocking the
// caller), and the outcomes of the last 1000 finished deliveries are kept
// for tests and for Redeliver.
//
// Every attempt carries Content-Type: application/json, a User-Agent, the
// caller's Options.Headers and the signature header (see Signature) with a
// fresh timestamp.
//
// The package knows nothing of the emulator's accounts, keys or faults:
// the emulator decides which URLs get an event, builds its id and body,
// and says when a delivery is a deliberate duplicate.
package webhooksend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

const (
	maxPending = 1024 // deliveries queued or waiting for a retry, all endpoints
	logSize    = 1000
	userAgent  = "KernelHost-Webhooks/1.0 (khproxy emulator)"
)

// Options configures a Sender. Secret and Header are required; every other
// zero value has the default its field names.
type Options struct {
	// Secret signs every delivery (see Signature). Required.
	Secret string
	// Header names the header that carries the signature, e.g.
	// "KH-Webhook-Signature". Required: letters, digits and '-' only.
	Header string
	// Headers are set on every attempt, besides Content-Type, User-Agent
	// and the signature header. Nil: none.
	Headers http.Header
	// Insecure lets Vet accept http:// URLs and loopback, private and
	// link-local hosts, and lets the default client dial them (local
	// testing only).
	Insecure bool
	// Client delivers. Nil: a client with a 10 s timeout that follows no
	// redirects and dials only public addresses unless Insecure (5 s to
	// connect, 5 s for the TLS handshake and for the response headers).
	// A custom client gets no such guard.
	Client *http.Client
	// Retries are the waits before each retry of a failed delivery; it
	// must pass ValidateRetries. Nil: FastRetries. Empty, non-nil: one
	// attempt only.
	Retries []time.Duration
	// Now is the clock whose Unix time each signature carries. Nil:
	// time.Now.
	Now func() time.Time
	// Lookup resolves a host name to addresses for Vet. Nil:
	// net.DefaultResolver.LookupHost.
	Lookup func(ctx context.Context, host string) ([]string, error)
	// Logger gets a warning for each delivery given up after its last
	// retry, naming the receiver's host only. Nil: discarded.
	Logger *slog.Logger
}

// Event is one event to deliver: its id (e.g. "evt_..."), its type
// (order.paid, ...) and the exact JSON body that is signed and sent.
type Event struct {
	ID   string
	Type string
	Body []byte
}

// Delivery is the outcome of one event sent to one URL. Body is the exact
// JSON that was signed.
type Delivery struct {
	EventID    string
	Type       string // order.paid, service.provisioned, ... (see the emulator's package doc)
	URL        string
	Body       []byte
	Attempts   int  // HTTP attempts made (0 if never sent, e.g. queue full)
	StatusCode int  // of the last attempt, 0 if none got an answer
	Delivered  bool // the last attempt got a 2xx
	Error      string
	// Duplicate marks a deliberate second delivery of an event
	// (Faults.DuplicateWebhooks or Redeliver).
	Duplicate bool
}

// ErrUnknownEvent is returned by Redeliver for an event id that is not in
// the delivery log.
var ErrUnknownEvent = errors.New("emulator: no finished delivery of this event")

// Sender signs and delivers events with retries. Create it with New and
// stop it with Close; its zero value is not usable. All its methods are
// safe for concurrent use.
type Sender struct {
	secret   string
	header   string
	headers  http.Header // canonical keys
	insecure bool
	client   *http.Client
	ownTr    *http.Transport // non-nil when client is ours
	retries  []time.Duration
	now      func() time.Time
	lookup   func(ctx context.Context, host string) ([]string, error)
	logger   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu        sync.Mutex
	gen       uint64
	endpoints map[string]*endpoint
	waiting   map[*job]*time.Timer // deliveries waiting for a retry
	pending   int                  // queued or waiting, this generation
	log       []Delivery
}

// job is one event on its way to one URL.
type job struct {
	url, id, typ string
	body         []byte
	duplicate    bool
	attempts     int
	status       int
	lastErr      string
	gen          uint64 // sender generation; Reset starts a new one
}

// endpoint is one URL's queue. One worker per endpoint sends its
// deliveries one at a time (first attempts in the order the events
// happened); endpoints never wait for each other, and a delivery waiting
// for its retry does not hold up the ones behind it.
type endpoint struct {
	queue   []*job
	running bool
}

// New validates o and returns a Sender ready to Send. It returns an error
// when Secret is empty, Header is not a header name, or Retries fails
// ValidateRetries. Workers start with the first Send.
func New(o Options) (*Sender, error) {
	if o.Secret == "" {
		return nil, errors.New("webhooksend: a secret is required")
	}
	if !validHeader(o.Header) {
		return nil, fmt.Errorf("webhooksend: header %q is not a valid header name", o.Header)
	}
	if err := ValidateRetries(o.Retries); err != nil {
		return nil, err
	}
	if o.Retries == nil {
		o.Retries = FastRetries()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Lookup == nil {
		o.Lookup = net.DefaultResolver.LookupHost
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{secret: o.Secret, header: o.Header, headers: http.Header{}, insecure: o.Insecure, client: o.Client,
		retries: append([]time.Duration(nil), o.Retries...), now: o.Now, lookup: o.Lookup, logger: o.Logger,
		endpoints: map[string]*endpoint{}, waiting: map[*job]*time.Timer{}}
	for k, vs := range o.Headers {
		for _, v := range vs {
			s.headers.Add(k, v)
		}
	}
	if s.client == nil {
		s.ownTr = guardedTransport(o.Insecure)
		s.client = &http.Client{Timeout: 10 * time.Second, Transport: s.ownTr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func validHeader(h string) bool {
	for _, c := range h {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return h != ""
}

// Secret returns the secret that signs the deliveries.
func (s *Sender) Secret() string { return s.secret }

// Retries returns a copy of the retry schedule in use.
func (s *Sender) Retries() []time.Duration { return append([]time.Duration{}, s.retries...) }

// Close cancels every delivery (those queued or waiting for a retry are
// recorded as failed, an attempt in flight is aborted and recorded) and
// waits for the workers. Later Sends are recorded as failed. Close is
// idempotent.
func (s *Sender) Close() {
	s.once.Do(func() {
		s.cancel()
		s.mu.Lock()
		s.discardLocked("emulator closed")
		s.mu.Unlock()
		s.wg.Wait()
		if s.ownTr != nil {
			s.ownTr.CloseIdleConnections()
		}
	})
}

// Reset forgets every queued and waiting delivery and the delivery log;
// an attempt in flight finishes unrecorded.
func (s *Sender) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discardLocked("")
	s.gen++
	s.pending = 0
	s.log = nil
}

// discardLocked drops queued and waiting deliveries, recording them with
// why unless why is ""; s.mu must be held.
func (s *Sender) discardLocked(why string) {
	for j, t := range s.waiting {
		t.Stop()
		if why != "" {
			s.recordLocked(j, why+" while waiting for a retry")
		}
	}
	clear(s.waiting)
	for _, ep := range s.endpoints {
		for _, j := range ep.queue {
			if why != "" {
				s.recordLocked(j, why)
			}
		}
		ep.queue = nil
	}
	s.endpoints = map[string]*endpoint{}
}

// Send queues ev for url without blocking, behind the deliveries already
// queued for url; duplicate marks a deliberate second delivery. When too
// many deliveries are pending, or the sender is closed, the delivery is
// recorded as failed instead.
func (s *Sender) Send(url string, ev Event, duplicate bool) {
	s.push(&job{url: url, id: ev.ID, typ: ev.Type, body: ev.Body, duplicate: duplicate})
}

// push queues a new delivery on its endpoint, starting the endpoint's
// worker if it is idle.
func (s *Sender) push(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j.gen = s.gen
	switch {
	case s.ctx.Err() != nil:
		s.recordLocked(j, "emulator closed")
		return
	case s.pending >= maxPending:
		s.recordLocked(j, "webhook queue full")
		return
	}
	s.pending++
	s.queueLocked(j)
}

// queueLocked appends j to its endpoint's queue; s.mu must be held.
func (s *Sender) queueLocked(j *job) {
	ep := s.endpoints[j.url]
	if ep == nil {
		ep = &endpoint{}
		s.endpoints[j.url] = ep
	}
	ep.queue = append(ep.queue, j)
	if !ep.running {
		ep.running = true
		s.wg.Add(1)
		go s.work(j.url, ep)
	}
}

// work sends ep's deliveries one at a time until its queue is empty.
func (s *Sender) work(url string, ep *endpoint) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(ep.queue) == 0 {
			ep.running = false
			if s.endpoints[url] == ep {
				delete(s.endpoints, url)
			}
			s.mu.Unlock()
			return
		}
		j := ep.queue[0]
		ep.queue[0] = nil
		ep.queue = ep.queue[1:]
		s.mu.Unlock()
		s.attempt(j)
	}
}

// attempt makes one HTTP attempt of j, then records it or schedules its
// retry.
func (s *Sender) attempt(j *job) {
	j.attempts++
	j.status, j.lastErr = s.post(j)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case j.lastErr == "":
		s.finishLocked(j, "")
	case s.ctx.Err() != nil:
		s.finishLocked(j, "emulator closed: "+j.lastErr)
	case j.gen != s.gen:
		// reset meanwhile: forget it
	case j.attempts > len(s.retries):
		s.logger.Warn("webhook delivery failed", "event", j.id, "type", j.typ, "host", hostOf(j.url),
			"attempts", j.attempts, "error", j.lastErr)
		s.finishLocked(j, j.lastErr)
	default:
		s.waiting[j] = time.AfterFunc(s.retries[j.attempts-1], func() { s.retry(j) })
	}
}

// retry puts j, whose wait is over, back on its endpoint's queue.
func (s *Sender) retry(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.waiting[j]; !ok {
		return // discarded by close or reset
	}
	delete(s.waiting, j)
	s.queueLocked(j)
}

// post sends j once and returns the status and "" on a 2xx, or why not.
func (s *Sender) post(j *job) (int, string) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		return 0, "bad webhook URL"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	for k, vs := range s.headers {
		req.Header[k] = vs
	}
	req.Header.Set(s.header, Signature(s.secret, s.now().Unix(), j.body))
	resp, err := s.client.Do(req)
	if err != nil {
		// The *url.Error would quote the whole URL, whose query may hold
		// the receiver's token: name the host only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, "POST to " + hostOf(j.url) + ": " + err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, "receiver answered " + strconv.Itoa(resp.StatusCode)
	}
	return resp.StatusCode, ""
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}

// finishLocked records j as done and no longer pending; s.mu must be held.
func (s *Sender) finishLocked(j *job, errMsg string) {
	if j.gen != s.gen {
		return
	}
	s.pending--
	s.recordLocked(j, errMsg)
}

// recordLocked appends j's outcome to the log of this generation; s.mu
// must be held.
func (s *Sender) recordLocked(j *job, errMsg string) {
	if j.gen != s.gen {
		return
	}
	if len(s.log) >= logSize {
		s.log = append(s.log[:0], s.log[1:]...)
	}
	s.log = append(s.log, Delivery{EventID: j.id, Type: j.typ, URL: j.url, Body: j.body,
		Attempts: j.attempts, StatusCode: j.status, Delivered: errMsg == "" && j.status/100 == 2,
		Error: errMsg, Duplicate: j.duplicate})
}

// Redeliver sends a finished event again, on purpose, to every URL it was
// delivered (or attempted) to: same id, same body, a fresh signature.
// It returns how many deliveries were queued, or an error wrapping
// ErrUnknownEvent when the event is not among the last 1000 finished
// deliveries.
func (s *Sender) Redeliver(eventID string) (int, error) {
	s.mu.Lock()
	var again []*job
	seen := map[string]bool{}
	for _, d := range s.log {
		if d.EventID == eventID && !seen[d.URL] {
			seen[d.URL] = true
			again = append(again, &job{url: d.URL, id: d.EventID, typ: d.Type, body: d.Body, duplicate: true})
		}
	}
	s.mu.Unlock()
	if len(again) == 0 {
		return 0, fmt.Errorf("%w: %s", ErrUnknownEvent, eventID)
	}
	for _, j := range again {
		s.push(j)
	}
	return len(again), nil
}

// Deliveries returns the finished deliveries (successful or given up),
// oldest first, at most the last 1000.
func (s *Sender) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.log...)
}

// Pending returns how many deliveries are queued, in flight or waiting for
// a retry.
func (s *Sender) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}
