package emulator

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	webhookMaxPending = 1024 // deliveries queued or waiting for a retry, all endpoints
	webhookLogSize    = 1000
	webhookMaxRetries = 20
)

// FastWebhookRetries returns the retry waits the Go API uses when
// Options.WebhookRetries is nil: 100 ms, 300 ms, 1 s (four attempts within
// about 1.5 s), so that tests see retries without waiting.
func FastWebhookRetries() []time.Duration {
	return []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, time.Second}
}

// ProductionWebhookRetries returns the retry waits "khproxy emulator" uses
// by default, growing like a production sender's: 1 m, 5 m, 30 m, 2 h,
// 6 h, 12 h, 24 h (eight attempts over about 45 hours).
func ProductionWebhookRetries() []time.Duration {
	return []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
		6 * time.Hour, 12 * time.Hour, 24 * time.Hour}
}

// ParseWebhookRetries reads a retry schedule as -webhook-retries takes it:
// "production", "fast", "none" (one attempt, no retries) or a
// comma-separated list of waits such as "1s,10s,1m".
func ParseWebhookRetries(s string) ([]time.Duration, error) {
	switch strings.TrimSpace(s) {
	case "production":
		return ProductionWebhookRetries(), nil
	case "fast":
		return FastWebhookRetries(), nil
	case "none":
		return []time.Duration{}, nil
	}
	var out []time.Duration
	for _, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("bad retry wait %q (want production, fast, none or e.g. 1s,10s,1m)", part)
		}
		out = append(out, d)
	}
	return out, validateRetries(out)
}

func validateRetries(waits []time.Duration) error {
	if len(waits) > webhookMaxRetries {
		return fmt.Errorf("emulator: at most %d webhook retries", webhookMaxRetries)
	}
	for _, d := range waits {
		if d < 0 {
			return errors.New("emulator: webhook retry waits must not be negative")
		}
	}
	return nil
}

// WebhookDelivery is the outcome of one event sent to one URL, as kept for
// tests (the most recent 1000). Body is the exact JSON that was signed.
type WebhookDelivery struct {
	EventID    string
	Type       string // order.paid, service.provisioned, ... (see the package doc)
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

type event struct {
	typ  string
	data any
}

// hookJob is one event on its way to one URL.
type hookJob struct {
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
	queue   []*hookJob
	running bool
}

// webhookSender signs and delivers events with retries.
type webhookSender struct {
	e        *Emulator
	secret   string
	header   string
	insecure bool
	client   *http.Client
	ownTr    *http.Transport // non-nil when client is ours
	retries  []time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu        sync.Mutex
	gen       uint64
	endpoints map[string]*endpoint
	waiting   map[*hookJob]*time.Timer // deliveries waiting for a retry
	pending   int                      // queued or waiting, this generation
	log       []WebhookDelivery
}

func newWebhookSender(e *Emulator, secret, header string, insecure bool, client *http.Client, retries []time.Duration) *webhookSender {
	if secret == "" {
		secret = "whsec_" + randomString(32, alphanumeric)
	}
	if retries == nil {
		retries = FastWebhookRetries()
	}
	s := &webhookSender{e: e, secret: secret, header: header, insecure: insecure, client: client,
		retries: append([]time.Duration(nil), retries...), endpoints: map[string]*endpoint{}, waiting: map[*hookJob]*time.Timer{}}
	if s.client == nil {
		s.ownTr = guardedTransport(insecure)
		s.client = &http.Client{Timeout: 10 * time.Second, Transport: s.ownTr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// guardedTransport dials only public addresses unless insecure: the URL
// was vetted when it was set, but DNS may have changed since.
func guardedTransport(insecure bool) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		if insecure {
			return nil
		}
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return fmt.Errorf("webhook: bad address: %w", err)
		}
		if a, err := netip.ParseAddr(host); err != nil || !isPublic(a) {
			return fmt.Errorf("webhook: refusing to connect to non-public address %s", host)
		}
		return nil
	}}
	return &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: 5 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second, MaxIdleConns: 16, IdleConnTimeout: 30 * time.Second}
}

// close cancels every delivery (those queued or waiting for a retry are
// recorded as failed) and waits for the workers.
func (s *webhookSender) close() {
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

// reset forgets every queued and waiting delivery and the delivery log
// (Emulator.Reset); an attempt in flight finishes unrecorded.
func (s *webhookSender) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discardLocked("")
	s.gen++
	s.pending = 0
	s.log = nil
}

// discardLocked drops queued and waiting deliveries, recording them with
// why unless why is ""; s.mu must be held.
func (s *webhookSender) discardLocked(why string) {
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

// webhookURLsLocked returns the distinct webhook URLs of an account's
// keys; e.mu must be held.
func (e *Emulator) webhookURLsLocked(accountID string) []string {
	var urls []string
	for _, ks := range e.keys {
		if ks.Account == accountID && ks.webhookURL != "" && !containsString(urls, ks.webhookURL) {
			urls = append(urls, ks.webhookURL)
		}
	}
	return urls
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// enqueue queues every event for every URL without blocking; while
// Faults.DuplicateWebhooks lasts, a delivery is queued twice. When too
// many deliveries are pending (or the sender closed) the delivery is
// recorded as failed.
func (s *webhookSender) enqueue(urls []string, created time.Time, evs []event) {
	for _, ev := range evs {
		id := "evt_" + newULID(s.e.now())
		body, err := json.Marshal(map[string]any{"id": id, "type": ev.typ, "created": created.Unix(), "data": ev.data})
		if err != nil {
			continue // plain maps: unreachable
		}
		for _, u := range urls {
			s.push(&hookJob{url: u, id: id, typ: ev.typ, body: body})
			if s.e.takeDuplicate() {
				s.push(&hookJob{url: u, id: id, typ: ev.typ, body: body, duplicate: true})
			}
		}
	}
}

// push queues a new delivery on its endpoint, starting the endpoint's
// worker if it is idle.
func (s *webhookSender) push(j *hookJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j.gen = s.gen
	switch {
	case s.ctx.Err() != nil:
		s.recordLocked(j, "emulator closed")
		return
	case s.pending >= webhookMaxPending:
		s.recordLocked(j, "webhook queue full")
		return
	}
	s.pending++
	s.queueLocked(j)
}

// queueLocked appends j to its endpoint's queue; s.mu must be held.
func (s *webhookSender) queueLocked(j *hookJob) {
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
func (s *webhookSender) work(url string, ep *endpoint) {
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
func (s *webhookSender) attempt(j *hookJob) {
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
		s.e.log.Warn("webhook delivery failed", "event", j.id, "type", j.typ, "host", hostOf(j.url),
			"attempts", j.attempts, "error", j.lastErr)
		s.finishLocked(j, j.lastErr)
	default:
		s.waiting[j] = time.AfterFunc(s.retries[j.attempts-1], func() { s.retry(j) })
	}
}

// retry puts j, whose wait is over, back on its endpoint's queue.
func (s *webhookSender) retry(j *hookJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.waiting[j]; !ok {
		return // discarded by close or reset
	}
	delete(s.waiting, j)
	s.queueLocked(j)
}

// post sends j once and returns the status and "" on a 2xx, or why not.
func (s *webhookSender) post(j *hookJob) (int, string) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		return 0, "bad webhook URL"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "KernelHost-Webhooks/1.0 (khproxy emulator)")
	req.Header.Set(HeaderEmulator, "1")
	req.Header.Set(s.header, signature(s.secret, s.e.serverNow().Unix(), j.body))
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

// signature returns the Stripe-style header value for body at time t.
func signature(secret string, t int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(t, 10) + "."))
	mac.Write(body)
	return "t=" + strconv.FormatInt(t, 10) + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}

// finishLocked records j as done and no longer pending; s.mu must be held.
func (s *webhookSender) finishLocked(j *hookJob, errMsg string) {
	if j.gen != s.gen {
		return
	}
	s.pending--
	s.recordLocked(j, errMsg)
}

// recordLocked appends j's outcome to the log of this generation; s.mu
// must be held.
func (s *webhookSender) recordLocked(j *hookJob, errMsg string) {
	if j.gen != s.gen {
		return
	}
	if len(s.log) >= webhookLogSize {
		s.log = append(s.log[:0], s.log[1:]...)
	}
	s.log = append(s.log, WebhookDelivery{EventID: j.id, Type: j.typ, URL: j.url, Body: j.body,
		Attempts: j.attempts, StatusCode: j.status, Delivered: errMsg == "" && j.status/100 == 2,
		Error: errMsg, Duplicate: j.duplicate})
}

// ErrUnknownEvent is returned by Redeliver for an event id that is not in
// the delivery log.
var ErrUnknownEvent = errors.New("emulator: no finished delivery of this event")

// Redeliver sends a finished event again, on purpose, to every URL it was
// delivered (or attempted) to: same id, same body, a fresh signature.
// Receivers must be idempotent. It returns how many deliveries were
// queued, or ErrUnknownEvent when the event is not among the last 1000
// finished deliveries. Safe for concurrent use.
func (e *Emulator) Redeliver(eventID string) (int, error) {
	s := e.hooks
	s.mu.Lock()
	var again []*hookJob
	seen := map[string]bool{}
	for _, d := range s.log {
		if d.EventID == eventID && !seen[d.URL] {
			seen[d.URL] = true
			again = append(again, &hookJob{url: d.URL, id: d.EventID, typ: d.Type, body: d.Body, duplicate: true})
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

// WebhookDeliveries returns the finished webhook deliveries (successful or
// given up), oldest first, at most the last 1000. Safe for concurrent use.
func (e *Emulator) WebhookDeliveries() []WebhookDelivery {
	e.hooks.mu.Lock()
	defer e.hooks.mu.Unlock()
	return append([]WebhookDelivery(nil), e.hooks.log...)
}

// PendingWebhooks returns how many deliveries are queued, in flight or
// waiting for a retry. Safe for concurrent use.
func (e *Emulator) PendingWebhooks() int {
	e.hooks.mu.Lock()
	defer e.hooks.mu.Unlock()
	return e.hooks.pending
}
