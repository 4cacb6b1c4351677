package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"time"

	"khproxy/config"
	"khproxy/proxy"
	"khproxy/signer"
)

// Clock offsets against the API's Date header: the API accepts timestamps
// within ±300 s (spec §1.1). Above checkClockWarn the clock drifts toward the
// limit; from checkClockFail on it is close enough that latency and further
// drift will cross it.
const (
	checkClockWarn = 60 * time.Second
	checkClockFail = 240 * time.Second
)

// checkTimeout bounds each request `khproxy check` makes.
const checkTimeout = 15 * time.Second

// errCheckFailed is returned when at least one check failed; main exits 1.
var errCheckFailed = errors.New("check failed")

// check runs `khproxy check`: with the configuration from the environment, as
// `khproxy` itself would load it, it checks the configuration and secret, that
// the API is reachable over verified TLS, the clock offset against the API's
// Date header, and that a signed GET /v1/me is accepted. Each check prints one
// line (✓ passed, ! warning, ✗ failed, - not run) and a fix when it did not
// pass. It makes two requests (GET /v1/health, GET /v1/me), three when the
// API answers signature_mismatch (GET /v1/me signed over the other path form
// of KH_SIGNED_PATH), and places no order. It returns an error wrapping errCheckFailed when a check failed.
func check(ctx context.Context, args, environ []string, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: check takes no arguments; it reads the same environment as khproxy", errUsage)
	}
	r := &checkReport{w: stdout}
	c := checkConfig(environ, r)
	if c == nil {
		r.skip("API reachable", "no usable configuration")
		r.skip("clock", "no usable configuration")
		r.skip("signed GET /v1/me", "no usable configuration")
		return r.result()
	}
	defer c.transport.CloseIdleConnections()
	serverDate, localMid, ok := c.health(ctx, r)
	if !ok {
		r.skip("clock", "GET /v1/health did not succeed")
		r.skip("signed GET /v1/me", "GET /v1/health did not succeed")
		return r.result()
	}
	checkClock(r, serverDate, localMid)
	c.me(ctx, r)
	return r.result()
}

// checkReport prints the result lines and remembers which checks failed.
type checkReport struct {
	w      io.Writer
	failed []string
}

func (r *checkReport) pass(name, msg string) { fmt.Fprintf(r.w, "✓ %s: %s\n", name, msg) }

func (r *checkReport) warn(name, msg, fix string) {
	fmt.Fprintf(r.w, "! %s: %s\n", name, msg)
	if fix != "" {
		fmt.Fprintf(r.w, "    fix: %s\n", fix)
	}
}

func (r *checkReport) fail(name, msg, fix string) {
	r.failed = append(r.failed, name)
	fmt.Fprintf(r.w, "✗ %s: %s\n", name, msg)
	if fix != "" {
		fmt.Fprintf(r.w, "    fix: %s\n", fix)
	}
}

func (r *checkReport) skip(name, why string) { fmt.Fprintf(r.w, "- %s: not checked: %s\n", name, why) }

func (r *checkReport) result() error {
	if len(r.failed) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", errCheckFailed, strings.Join(r.failed, ", "))
}

// checker holds what the network checks need, built from the configuration.
type checker struct {
	upstream   *url.URL
	key        string
	secretVar  string // KH_SECRET or KH_SECRET_FILE, for advice
	signer     *signer.Signer
	signFull   bool // KH_SIGNED_PATH=full
	transport  *http.Transport
	clientTime func() time.Time
}

// checkConfig loads the configuration and the secret exactly as `khproxy`
// does and reports the outcome; it returns nil when they are unusable.
func checkConfig(environ []string, r *checkReport) *checker {
	const name = "configuration"
	fix := "correct the variables this names (khproxy -h lists them all)"
	cfg, warnings, err := config.Load(environ)
	if err != nil {
		r.fail(name, strings.ReplaceAll(err.Error(), "\n", "; "), fix)
		return nil
	}
	secret, err := secretSource(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		r.fail(name, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "configuration:\n"), "\n", "; "),
			"put the key's secret, alone, in KH_SECRET or in the file KH_SECRET_FILE names, readable by khproxy")
		return nil
	}
	upstream := cfg.Upstream
	secretVar, from := "KH_SECRET", "KH_SECRET"
	if cfg.SecretFile != "" {
		secretVar, from = "KH_SECRET_FILE", "KH_SECRET_FILE "+cfg.SecretFile
	}
	r.pass(name, fmt.Sprintf("key %s, secret from %s, upstream %s", cfg.Key, from, upstream.Redacted()))
	for _, w := range warnings {
		r.warn(name, w.Var+": "+w.Message, "")
	}
	return &checker{
		upstream:   upstream,
		key:        cfg.Key,
		secretVar:  secretVar,
		signer:     &signer.Signer{Key: cfg.Key, Secret: secret},
		signFull:   cfg.SignedPath == config.SignedPathFull,
		transport:  proxy.NewTransport(),
		clientTime: time.Now,
	}
}

// url returns the upstream URL of an API path such as /v1/health, built as
// the proxy builds it: the base path, then the path.
func (c *checker) url(path string) string {
	u := *c.upstream
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	return u.String()
}

// do sends one request with the check timeout and reads the whole answer.
// local receives the local address of the connection used.
func (c *checker) do(ctx context.Context, req *http.Request) (resp *http.Response, body []byte, local string, err error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		local = info.Conn.LocalAddr().String()
	}}
	req = req.WithContext(httptrace.WithClientTrace(ctx, trace))
	resp, err = c.transport.RoundTrip(req)
	if err != nil {
		return nil, nil, local, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, body, local, err
}

// viaProxy returns the HTTP(S)_PROXY the transport uses for the upstream, or
// nil when it connects directly.
func (c *checker) viaProxy() *url.URL {
	req, err := http.NewRequest(http.MethodGet, c.url("/v1/health"), nil)
	if err != nil {
		return nil
	}
	u, _ := c.transport.Proxy(req)
	return u
}

// health checks GET /v1/health and returns the API's Date and the local time
// halfway through the request, for the clock check.
func (c *checker) health(ctx context.Context, r *checkReport) (serverDate, localMid time.Time, ok bool) {
	const name = "API reachable"
	target := c.url("/v1/health")
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		r.fail(name, err.Error(), "check KH_UPSTREAM")
		return time.Time{}, time.Time{}, false
	}
	start := c.clientTime()
	resp, _, _, err := c.do(ctx, req)
	end := c.clientTime()
	proxyURL, via := c.viaProxy(), ""
	if proxyURL != nil {
		via = " via proxy " + proxyURL.Redacted()
	}
	if err != nil {
		msg, fix := unreachable(err, c.upstream, proxyURL)
		r.fail(name, "GET "+target+via+": "+msg, fix)
		return time.Time{}, time.Time{}, false
	}
	if resp.StatusCode != http.StatusOK {
		fix := "KH_UPSTREAM must be the API base, like " + config.DocumentedUpstream + ", without /v1"
		if resp.StatusCode >= 500 {
			fix = "the API (or a proxy in front of it) has a problem; try again later"
		}
		r.fail(name, fmt.Sprintf("GET %s%s answered %d, want 200", target, via, resp.StatusCode), fix)
		return time.Time{}, time.Time{}, false
	}
	tlsNote := "plain http, no TLS"
	if resp.TLS != nil {
		tlsNote = fmt.Sprintf("%s, certificate verified for %s", tls.VersionName(resp.TLS.Version), c.upstream.Hostname())
	}
	r.pass(name, fmt.Sprintf("GET %s%s answered 200 in %s; %s", target, via, end.Sub(start).Round(time.Millisecond), tlsNote))
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return time.Time{}, time.Time{}, true
	}
	return date, start.Add(end.Sub(start) / 2), true
}

// unreachable explains a failed request to the API and how to fix it.
func unreachable(err error, upstream, via *url.URL) (msg, fix string) {
	var (
		verr  *tls.CertificateVerificationError
		uaerr x509.UnknownAuthorityError
		herr  x509.HostnameError
		dns   *net.DNSError
		op    *net.OpError
		nerr  net.Error
	)
	host := upstream.Host
	switch {
	case errors.As(err, &verr), errors.As(err, &uaerr), errors.As(err, &herr):
		return "TLS certificate not verified: " + rootCause(err),
			"if a TLS-inspecting proxy or firewall is in the way, add its CA certificate to this machine's trust store (or SSL_CERT_FILE); never turn verification off"
	case errors.As(err, &op) && op.Op == "proxyconnect":
		return "cannot use the proxy " + via.Redacted() + ": " + rootCause(err),
			"check HTTPS_PROXY/HTTP_PROXY, or add " + upstream.Hostname() + " to NO_PROXY if the API is reached directly"
	case errors.As(err, &dns):
		return "cannot resolve " + upstream.Hostname() + ": " + dns.Err,
			"check the host name in KH_UPSTREAM and this machine's DNS"
	case errors.As(err, &nerr) && nerr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s", checkTimeout),
			"allow outgoing connections to " + host + " in firewalls and egress rules, or set HTTPS_PROXY if egress goes through a proxy"
	default:
		return "cannot connect: " + rootCause(err),
			"check that " + host + " is right in KH_UPSTREAM and that firewalls and egress rules let this machine reach it"
	}
}

// rootCause drops the "Get URL:" wrapping, which the check line already says.
func rootCause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// checkClock compares the local clock with the API's Date header.
func checkClock(r *checkReport, serverDate, localMid time.Time) {
	const name = "clock"
	if serverDate.IsZero() {
		r.warn(name, "the API sent no usable Date header, so the offset is unknown", "keep this machine's clock synchronised with NTP")
		return
	}
	// Date has whole seconds: the server's time was up to a second later.
	offset := serverDate.Add(500 * time.Millisecond).Sub(localMid).Round(time.Second)
	abs := max(offset, -offset)
	dir := "behind"
	if offset < 0 {
		dir = "ahead of"
	}
	msg := fmt.Sprintf("this machine is %s %s the API's clock (the API accepts ±300s)", abs, dir)
	fix := "synchronise this machine's clock with NTP (for example: timedatectl set-ntp true)"
	switch {
	case abs >= checkClockFail:
		r.fail(name, msg, fix)
	case abs > checkClockWarn:
		r.warn(name, msg, fix)
	default:
		r.pass(name, fmt.Sprintf("within %s of the API's clock", max(abs, time.Second)))
	}
}

// meAnswer is the part of an answer to GET /v1/me that the check reads: a
// problem's fields, or the account and key of a 200.
type meAnswer struct {
	Type    string `json:"type"`
	Detail  string `json:"detail"`
	Reason  string `json:"reason"`
	Account struct {
		ID string `json:"id"`
	} `json:"account"`
	Key struct {
		Scopes []string `json:"scopes"`
	} `json:"key"`
}

// signedMe sends GET /v1/me signed over the path form full chooses (spec
// §9.1): /v1/me, or the upstream's whole path. ok is false when it could not
// be sent; the failure is then reported.
func (c *checker) signedMe(ctx context.Context, r *checkReport, full bool) (resp *http.Response, p meAnswer, local string, ok bool) {
	const name = "signed GET /v1/me"
	req, err := http.NewRequest(http.MethodGet, c.url("/v1/me"), nil)
	if err != nil {
		r.fail(name, err.Error(), "check KH_UPSTREAM")
		return nil, p, "", false
	}
	path := "/v1/me"
	if full {
		path = req.URL.RequestURI()
	}
	hs, err := c.signer.Sign(http.MethodGet, path, signer.BodyHash(nil), c.clientTime())
	if err != nil {
		r.fail(name, err.Error(), "check "+c.secretVar)
		return nil, p, "", false
	}
	hs.Apply(req.Header)
	resp, body, local, err := c.do(ctx, req)
	if err != nil {
		msg, fix := unreachable(err, c.upstream, c.viaProxy())
		r.fail(name, msg, fix)
		return nil, p, "", false
	}
	_ = json.Unmarshal(body, &p) // the API's shape is not documented; a body that does not parse only leaves fields empty
	return resp, p, local, true
}

// signedPathName is the KH_SIGNED_PATH value of a path form.
func signedPathName(full bool) string {
	if full {
		return string(config.SignedPathFull)
	}
	return string(config.SignedPathV1)
}

// me checks that a signed GET /v1/me is accepted, and turns a 401 reason into
// advice. On signature_mismatch it signs the other path form once (spec §9.1
// leaves open which one the API verifies) to tell a wrong KH_SIGNED_PATH
// from a wrong secret.
func (c *checker) me(ctx context.Context, r *checkReport) {
	const name = "signed GET /v1/me"
	resp, p, local, ok := c.signedMe(ctx, r, c.signFull)
	if !ok {
		return
	}
	switch resp.StatusCode {
	case http.StatusOK:
		msg := "accepted"
		if p.Account.ID != "" {
			msg += ", account " + p.Account.ID
		}
		if p.Key.Scopes != nil {
			msg += ", key scopes: " + strings.Join(p.Key.Scopes, " ")
		}
		r.pass(name, msg)
	case http.StatusUnauthorized:
		if p.Reason == "signature_mismatch" {
			c.otherPathForm(ctx, r)
			return
		}
		r.fail(name, fmt.Sprintf("401 %s", orDash(p.Reason)), c.authFix(p.Reason, p.Detail, local))
	default:
		msg := fmt.Sprintf("answered %d", resp.StatusCode)
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/problem+json" {
			msg += fmt.Sprintf(" %s %s: %s", p.Type[strings.LastIndex(p.Type, "/")+1:], p.Reason, p.Detail)
		}
		fix := "see the API's answer above"
		if resp.StatusCode == http.StatusTooManyRequests {
			fix = "the key's rate limit is spent; wait " + orDash(resp.Header.Get("Retry-After")) + " s and run the check again"
		}
		r.fail(name, msg, fix)
	}
}

// otherPathForm follows a 401 signature_mismatch: it signs GET /v1/me once
// over the other path form and says which one the API accepts, or that the
// secret is wrong when neither is.
func (c *checker) otherPathForm(ctx context.Context, r *checkReport) {
	const name = "signed GET /v1/me"
	mine, other := signedPathName(c.signFull), signedPathName(!c.signFull)
	resp, p, _, ok := c.signedMe(ctx, r, !c.signFull)
	if !ok {
		return
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		r.fail(name, fmt.Sprintf("401 signature_mismatch with KH_SIGNED_PATH=%s; signed over the other path form (KH_SIGNED_PATH=%s) it is accepted", mine, other),
			fmt.Sprintf("set KH_SIGNED_PATH=%s: the API verifies %s (spec §9.1 leaves it open)", other, pathFormText(!c.signFull)))
	case resp.StatusCode == http.StatusUnauthorized && p.Reason == "signature_mismatch":
		r.fail(name, fmt.Sprintf("401 signature_mismatch, with KH_SIGNED_PATH=%s and with %s", mine, other), c.authFix("signature_mismatch", p.Detail, ""))
	default:
		r.fail(name, fmt.Sprintf("401 signature_mismatch with KH_SIGNED_PATH=%s; with %s the API answered %d %s", mine, other, resp.StatusCode, orDash(p.Reason)),
			c.authFix("signature_mismatch", p.Detail, ""))
	}
}

// pathFormText says what a path form signs.
func pathFormText(full bool) string {
	if full {
		return "the full path, base path included"
	}
	return "the path from /v1 on"
}

// authFix turns the reason of a 401 auth_failed into advice (spec §1.5).
func (c *checker) authFix(reason, detail, local string) string {
	switch reason {
	case "signature_mismatch":
		return "the secret in " + c.secretVar + " is wrong, or the key's secret was rotated (the old one stops working at once): set the key's current secret"
	case "unknown_or_locked_key":
		return "the API does not know key " + c.key + " or it is revoked or locked: check it in the customer portal (Reseller API), or create a key and set KH_KEY and " + c.secretVar
	case "ip_not_allowed":
		if via := c.viaProxy(); via != nil {
			return "add the public IP address of the proxy " + via.Redacted() + " to the key's IP whitelist in the customer portal"
		}
		host, _, err := net.SplitHostPort(local)
		if err != nil {
			host = "this machine's address"
		}
		return "add this machine's egress IP to the key's IP whitelist in the customer portal (it connected from " + host + "; behind NAT the public address differs)"
	case "timestamp_out_of_window":
		return "this machine's clock is more than 300s off the API's: synchronise it with NTP (for example: timedatectl set-ntp true)"
	case "bad_key":
		return "KH_KEY is not a valid key id: copy it again from the customer portal (kh_live_ and 32 characters)"
	case "missing_headers":
		return "the KH-* headers did not reach the API: something between khproxy and the API strips them (a proxy?)"
	case "replay_detected":
		return "the API had seen this request's nonce: something between khproxy and the API resends requests"
	case "bad_timestamp", "bad_nonce", "bad_signature":
		return "the API found a malformed KH-* header; please report this as a khproxy bug"
	}
	return "the API refused the key: " + orDash(detail)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
