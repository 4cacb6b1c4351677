// Package browserguard keeps web browsers away from khproxy's signing
// listener. khproxy signs whatever reaches that listener with a key that
// spends money, and a web page open in a browser on the same machine can
// reach 127.0.0.1 too: a text/plain POST needs no CORS preflight, and with
// DNS rebinding (a page's own name re-pointed at 127.0.0.1) the page can
// even read the answers. A Guard refuses both:
//
//   - a request a browser sent on a page's behalf: it carries an Origin
//     header, or a Sec-Fetch-Site header other than "none" (what a user
//     typing a URL gets), and its origin is not an allowed one; and every
//     CORS preflight (OPTIONS with Access-Control-Request-Method), since
//     khproxy answers no CORS;
//   - a request whose Host is not a name khproxy answers to: a loopback
//     name or address, or an allowed host. A rebinding page's requests
//     carry its own name as Host, so this stops DNS rebinding. Requests
//     that arrived over a Unix socket skip this check: a browser cannot
//     reach one.
//
// The HTTP clients apps use (curl, Python, Node, PHP, Go) send neither
// Origin nor Sec-Fetch-*, and send the host they connected to as Host.
//
// The package judges requests and nothing else: it does not answer them,
// log or count them, and knows nothing of configuration variables.
package browserguard

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Options lists what a Guard lets through besides loopback hosts and
// requests without browser headers. The zero Options allows no origin and
// no other host.
type Options struct {
	// AllowedOrigins are origins whose requests are served although a
	// browser sent them: "scheme://host[:port]", compared with the Origin
	// header as browsers serialise it (lower-case scheme and host, no
	// default port). "null" is never allowed.
	AllowedOrigins []string
	// AllowedHosts are host names or IP addresses, without a port, that a
	// request's Host may name besides loopback ones: the name or address
	// of khproxy's listener that callers on other hosts use, or the
	// upstream's host (what a client sends that uses khproxy as its
	// HTTP_PROXY). Compared without regard to case, a trailing dot and
	// IPv6 brackets.
	AllowedHosts []string
}

// Guard judges requests to the signing listener. Create it with New; the
// zero Guard refuses every browser request and every non-loopback Host. A
// Guard is never changed once made and is safe for concurrent use.
type Guard struct {
	origins map[string]bool
	hosts   map[string]bool
}

// New returns a Guard that allows what opts lists.
func New(opts Options) *Guard {
	g := &Guard{origins: map[string]bool{}, hosts: map[string]bool{}}
	for _, o := range opts.AllowedOrigins {
		if o = strings.ToLower(strings.TrimSpace(o)); o != "" && o != "null" {
			g.origins[o] = true
		}
	}
	for _, h := range opts.AllowedHosts {
		if h = canonicalHost(h); h != "" {
			g.hosts[h] = true
		}
	}
	return g
}

// Reason says why a Guard refused a request.
type Reason int

// The reasons for a refusal.
const (
	// FromBrowser: a browser sent the request on behalf of a page whose
	// origin is not allowed (Origin, or Sec-Fetch-Site other than none).
	FromBrowser Reason = iota + 1
	// Preflight: a CORS preflight; khproxy answers no CORS.
	Preflight
	// ForeignHost: the Host header names no host khproxy answers to.
	ForeignHost
)

// Refusal is the error Check returns. Detail is safe to show to the client
// and says what was refused; it quotes client-sent values, shortened.
type Refusal struct {
	Reason Reason
	Detail string
}

// Error returns the detail.
func (r *Refusal) Error() string { return r.Detail }

// Check returns nil when r may be served, else a *Refusal. It reads only
// r's method, Host and headers, and the local address in r's context
// (http.LocalAddrContextKey), which tells a Unix socket. A nil Guard
// refuses as the zero Guard does.
func (g *Guard) Check(r *http.Request) error {
	if g == nil {
		g = &Guard{}
	}
	if r.Method == http.MethodOptions && len(r.Header.Values("Access-Control-Request-Method")) > 0 {
		return &Refusal{Reason: Preflight, Detail: "khproxy answers no CORS preflight: web pages may not use it"}
	}
	if err := g.checkOrigin(r.Header); err != nil {
		return err
	}
	if viaUnixSocket(r) {
		return nil
	}
	return g.checkHost(r.Host)
}

func (g *Guard) checkOrigin(h http.Header) error {
	origins := h.Values("Origin")
	for _, o := range origins {
		if !g.origins[strings.ToLower(strings.TrimSpace(o))] {
			return &Refusal{Reason: FromBrowser, Detail: fmt.Sprintf("requests from web pages are refused: Origin %s is not an allowed origin", quote(o))}
		}
	}
	if len(origins) > 0 {
		return nil // every origin is allowed
	}
	for _, site := range h.Values("Sec-Fetch-Site") {
		if !strings.EqualFold(strings.TrimSpace(site), "none") {
			return &Refusal{Reason: FromBrowser, Detail: fmt.Sprintf("requests from web pages are refused: the request carries Sec-Fetch-Site %s and no allowed Origin", quote(site))}
		}
	}
	return nil
}

func (g *Guard) checkHost(host string) error {
	h := canonicalHost(hostOnly(host))
	if isLoopback(h) || g.hosts[h] {
		return nil
	}
	return &Refusal{Reason: ForeignHost, Detail: fmt.Sprintf("the Host %s is not a name khproxy answers to (a loopback name or address, or an allowed host): refused to stop DNS rebinding", quote(host))}
}

// viaUnixSocket reports whether r arrived on a Unix socket.
func viaUnixSocket(r *http.Request) bool {
	_, ok := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr)
	return ok
}

// hostOnly returns a Host header's host without its port: "[::1]:8080" is
// "[::1]", "localhost:8080" is "localhost".
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// canonicalHost lower-cases a host, drops IPv6 brackets and one trailing
// dot, so that equal hosts compare equal.
func canonicalHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(h, ".")
}

// isLoopback reports whether h is "localhost" or a loopback IP address
// (127.0.0.0/8, ::1).
func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// quote quotes a client-sent value for a detail, shortened to 100 bytes.
func quote(s string) string {
	const limit = 100
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return fmt.Sprintf("%q", s)
}
