package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"khproxy/config"
	"khproxy/emulator"
	"khproxy/internal/httpserve"
	"khproxy/signer"
	"khproxy/webhook"
)

// demoWebhooks gives `khproxy demo` webhooks the way `stripe listen
// --forward-to` does: the emulator sends the demo key's events to khproxy's
// webhook listener, which verifies them like in production and forwards them
// to KH_WEBHOOK_FORWARD when that is set, or else to a printer on loopback
// that writes one line per event to the demo's output.
type demoWebhooks struct {
	secret  string       // signs and verifies the webhooks; generated per run
	printer net.Listener // the printer's; nil when KH_WEBHOOK_FORWARD is set
	out     io.Writer
	outMu   sync.Mutex

	// target is the one address the emulator may deliver to, khproxy's
	// webhook listener, once known.
	target atomic.Pointer[string]
}

// newDemoWebhooks prepares the webhook secret and, unless environ sets
// KH_WEBHOOK_FORWARD, the printer's listener; out receives its lines.
func newDemoWebhooks(environ []string, out io.Writer) (*demoWebhooks, error) {
	d := &demoWebhooks{secret: "whsec_" + rand.Text(), out: out}
	if lookup(environ, "KH_WEBHOOK_FORWARD") == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("demo: webhook printer listener: %w", err)
		}
		d.printer = ln
	}
	return d, nil
}

// close releases the printer's listener when it was never served.
func (d *demoWebhooks) close() {
	if d.printer != nil {
		d.printer.Close()
	}
}

// env returns the proxy's webhook settings for the demo; the user's own
// KH_WEBHOOK_LISTEN and KH_WEBHOOK_FORWARD, placed after them, win.
func (d *demoWebhooks) env() []string {
	env := []string{"KH_WEBHOOK_LISTEN=127.0.0.1:0", "KH_WEBHOOK_SECRET=" + d.secret}
	if d.printer != nil {
		env = append(env, "KH_WEBHOOK_FORWARD=http://"+d.printer.Addr().String()+"/")
	}
	return env
}

// emulatorOptions sets the emulator's webhook options: insecure (http to
// loopback) URLs are allowed, but its client dials khproxy's webhook listener
// and nothing else.
func (d *demoWebhooks) emulatorOptions(o *emulator.Options, header string) {
	o.WebhookSecret = d.secret
	o.WebhookHeader = header
	o.AllowInsecureWebhooks = true
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	o.WebhookClient = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if t := d.target.Load(); t == nil || addr != *t {
				return nil, errors.New("demo: webhooks go to khproxy's webhook listener only")
			}
			return dialer.DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// servers returns the printer's server, if there is one.
func (d *demoWebhooks) servers() []httpserve.Server {
	if d.printer == nil {
		return nil
	}
	return []httpserve.Server{{Name: "webhook printer", Listener: d.printer, Handler: http.HandlerFunc(d.print)}}
}

// register points the demo key's webhook URL at khproxy's webhook listener
// (addr), with a signed PUT /v1/webhooks straight to the emulator at api;
// full signs the whole request path (KH_SIGNED_PATH=full), as the demo's
// emulator then verifies it.
func (d *demoWebhooks) register(api, key, secret, addr string, full bool) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	target := net.JoinHostPort(host, port)
	d.target.Store(&target)
	hookURL := "http://" + target + "/kernelhost"

	body, _ := json.Marshal(map[string]string{"url": hookURL})
	req, err := http.NewRequest(http.MethodPut, api+"/v1/webhooks", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	path := "/v1/webhooks"
	if full {
		path = req.URL.RequestURI()
	}
	s := &signer.Signer{Key: key, Secret: signer.StaticSecret(secret)}
	hs, err := s.Sign(http.MethodPut, path, signer.BodyHash(body), time.Now())
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	hs.Apply(req.Header)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("PUT /v1/webhooks: %s: %s", resp.Status, msg)
	}
	return hookURL, nil
}

// print writes one line per verified event to the demo's output.
func (d *demoWebhooks) print(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(webhook.VerifiedHeader) != "true" {
		http.Error(w, "only khproxy's verified webhooks are printed", http.StatusForbidden)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, webhook.DefaultMaxBodyBytes))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	line := eventLine(body)
	d.outMu.Lock()
	fmt.Fprintln(d.out, line)
	d.outMu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// eventLine summarises an event of the emulator's envelope ({id, type,
// created, data}) in one line; the data's id and status, when it has them,
// and never the rest (a service's data holds its root password).
func eventLine(body []byte) string {
	var ev struct {
		ID      string
		Type    string
		Created int64
		Data    struct {
			ID     json.Number
			Status string
		}
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Type == "" {
		return fmt.Sprintf("webhook (verified): %d bytes that are not a JSON event", len(body))
	}
	line := fmt.Sprintf("%s webhook %-19s %s", time.Unix(ev.Created, 0).Format(time.TimeOnly), ev.Type, ev.ID)
	if ev.Data.ID != "" {
		line += " id=" + ev.Data.ID.String()
	}
	if ev.Data.Status != "" {
		line += " status=" + ev.Data.Status
	}
	return line + " (verified)"
}

// start registers khproxy's webhook listener with the emulator once khproxy
// listens, and returns the banner's paragraph on webhooks. A failure is
// logged and the demo goes on without webhooks.
func (d *demoWebhooks) start(l listening, api, key, secret string, cfg config.Config, log *slog.Logger) string {
	hookURL, err := d.register(api, key, secret, l.webhook, cfg.SignedPath == config.SignedPathFull)
	if err != nil {
		log.Error("demo: webhooks off: could not register khproxy's webhook URL with the emulator", "error", err)
		return "Webhooks are off: the emulator did not take khproxy's webhook URL (see the log).\n\n"
	}
	then := "and prints the event here, one line each (set KH_WEBHOOK_FORWARD to send\nthem to your app instead)"
	if d.printer == nil {
		then = "and forwards the event to " + cfg.WebhookForward.Redacted()
	}
	return fmt.Sprintf(`Webhooks, as with stripe listen --forward-to: the emulator sends this key's
events (order.paid, service.provisioned, invoice.created) to khproxy's
webhook listener, which verifies each signature (%s)
%s. A forged one is refused:

  curl -s -X POST %s -d '{"type":"order.paid"}'

`, cfg.WebhookSignatureHeader, then, hookURL)
}
