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
	webhookQueueSize   = 256
	webhookMaxAttempts = 4
	webhookLogSize     = 1000
	webhookMaxURLLen   = 2048
)

// WebhookDelivery is the outcome of one event sent to one URL, as kept for
// tests (the most recent 1000). Body is the exact JSON that was signed.
type WebhookDelivery struct {
	EventID    string
	Type       string // order.paid, service.provisioned, invoice.created
	URL        string
	Body       []byte
	Attempts   int  // HTTP attempts made (0 if never sent, e.g. queue full)
	StatusCode int  // of the last attempt, 0 if none got an answer
	Delivered  bool // the last attempt got a 2xx
	Error      string
}

type event struct {
	typ  string
	data any
}

type hookJob struct {
	url, id, typ string
	body         []byte
}

// webhookSender queues events and delivers them from one worker.
type webhookSender struct {
	e        *Emulator
	secret   string
	header   string
	insecure bool
	client   *http.Client
	ownTr    *http.Transport // non-nil when client is ours

	queue  chan hookJob
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu  sync.Mutex
	log []WebhookDelivery
}

func newWebhookSender(e *Emulator, secret, header string, insecure bool, client *http.Client) *webhookSender {
	if secret == "" {
		secret = "whsec_" + randomString(32, alphanumeric)
	}
	s := &webhookSender{e: e, secret: secret, header: header, insecure: insecure, client: client,
		queue: make(chan hookJob, webhookQueueSize)}
	if s.client == nil {
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
		s.ownTr = &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: 5 * time.Second,
			ResponseHeaderTimeout: 5 * time.Second, MaxIdleConns: 4, IdleConnTimeout: 30 * time.Second}
		s.client = &http.Client{Timeout: 10 * time.Second, Transport: s.ownTr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.run()
	return s
}

func (s *webhookSender) close() {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		if s.ownTr != nil {
			s.ownTr.CloseIdleConnections()
		}
	})
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

// enqueue queues every event for every URL without blocking; when the
// queue is full (or the sender closed) the delivery is recorded as failed.
func (s *webhookSender) enqueue(urls []string, created time.Time, evs []event) {
	for _, ev := range evs {
		id := "evt_" + newULID(s.e.now())
		body, err := json.Marshal(map[string]any{"id": id, "type": ev.typ, "created": created.Unix(), "data": ev.data})
		if err != nil {
			continue // plain maps: unreachable
		}
		for _, u := range urls {
			job := hookJob{url: u, id: id, typ: ev.typ, body: body}
			if s.ctx.Err() != nil {
				s.record(job, 0, 0, "emulator closed")
				continue
			}
			select {
			case s.queue <- job:
			default:
				s.record(job, 0, 0, "webhook queue full")
			}
		}
	}
}

func (s *webhookSender) run() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case j := <-s.queue:
			s.deliver(j)
		}
	}
}

// signature returns the Stripe-style header value for body at time t.
func signature(secret string, t int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(t, 10) + "."))
	mac.Write(body)
	return "t=" + strconv.FormatInt(t, 10) + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

func (s *webhookSender) deliver(j hookJob) {
	var status int
	var lastErr string
	for attempt := 1; attempt <= webhookMaxAttempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(s.e.hookBackoff << (attempt - 2))
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				s.record(j, attempt-1, status, "emulator closed during retries")
				return
			}
		}
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
		if err != nil {
			s.record(j, attempt-1, 0, err.Error())
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "KernelHost-Webhooks/1.0 (khproxy emulator)")
		req.Header.Set(s.header, signature(s.secret, s.e.serverNow().Unix(), j.body))
		resp, err := s.client.Do(req)
		if err != nil {
			// The *url.Error would quote the whole URL, whose query may
			// hold the receiver's token: name the host only.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			status, lastErr = 0, "POST to "+hostOf(j.url)+": "+err.Error()
			continue
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		status = resp.StatusCode
		if status/100 == 2 {
			s.record(j, attempt, status, "")
			return
		}
		lastErr = "receiver answered " + strconv.Itoa(status)
	}
	s.e.log.Warn("webhook delivery failed", "event", j.id, "type", j.typ, "host", hostOf(j.url), "error", lastErr)
	s.record(j, webhookMaxAttempts, status, lastErr)
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}

func (s *webhookSender) record(j hookJob, attempts, status int, errMsg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) >= webhookLogSize {
		s.log = append(s.log[:0], s.log[1:]...)
	}
	s.log = append(s.log, WebhookDelivery{EventID: j.id, Type: j.typ, URL: j.url, Body: j.body,
		Attempts: attempts, StatusCode: status, Delivered: errMsg == "" && status/100 == 2, Error: errMsg})
}

// WebhookDeliveries returns the finished webhook deliveries (successful or
// given up), oldest first, at most the last 1000. Safe for concurrent use.
func (e *Emulator) WebhookDeliveries() []WebhookDelivery {
	e.hooks.mu.Lock()
	defer e.hooks.mu.Unlock()
	return append([]WebhookDelivery(nil), e.hooks.log...)
}

// vet checks a webhook URL (spec §3) and returns "" or the reason it is
// refused.
func (s *webhookSender) vet(ctx context.Context, raw string) string {
	if len(raw) > webhookMaxURLLen {
		return fmt.Sprintf("must be at most %d characters", webhookMaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Hostname() == "" {
		return "must be an absolute URL"
	}
	scheme := strings.ToLower(u.Scheme)
	if s.insecure {
		if scheme != "https" && scheme != "http" {
			return "must use https (or http with insecure webhooks allowed)"
		}
		return ""
	}
	if scheme != "https" {
		return "must use https"
	}
	if u.User != nil {
		return "must not contain user info"
	}
	const privateMsg = "host must not be a loopback, private or link-local address"
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if !isPublic(a) {
			return privateMsg
		}
		return ""
	}
	lower := strings.ToLower(strings.TrimSuffix(host, "."))
	if lower == "localhost" || strings.HasSuffix(lower, ".localhost") {
		return privateMsg
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := s.e.lookupIP(ctx, host)
	if err != nil || len(addrs) == 0 {
		return "host does not resolve"
	}
	for _, a := range addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil || !isPublic(ip) {
			return "host resolves to a non-public address"
		}
	}
	return ""
}

func defaultLookup(ctx context.Context, host string) ([]string, error) {
	return net.DefaultResolver.LookupHost(ctx, host)
}

var nonPublicPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"), // documentation
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),
	// IPv6 forms that can carry or reach an IPv4 address: NAT64, 6to4,
	// Teredo; plus deprecated site-local and documentation.
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("fec0::/10"),
}

// isPublic reports whether a is a globally routable unicast address.
func isPublic(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublicPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
