package proxy

import (
	"net/http"
	"strings"
)

// The API's documentation gives full URLs, .../cp/kh_reseller_api/v1/orders,
// and its Location headers point there too, while khproxy's clients address
// it with paths relative to the upstream's base, /v1/orders. These functions
// translate between the two path spaces, the way reverse proxies do
// (Apache's ProxyPassReverse): a request path under the base path is taken
// relative to it, and a Location pointing under it is given back relative to
// khproxy.

// underBase returns target (a raw path with optional ?query or #fragment)
// relative to the upstream's base path, and whether it was under it: with
// base /cp/kh_reseller_api, "/cp/kh_reseller_api/v1/orders?x" is
// "/v1/orders?x". Only a whole base path segment matches, byte for byte as
// the upstream URL escapes it. With no base path every path is under it.
func (p *Proxy) underBase(target string) (string, bool) {
	rest, ok := strings.CutPrefix(target, p.basePath)
	switch {
	case !ok:
		return target, false
	case rest == "":
		return "/", true
	case rest[0] == '/':
		return rest, true
	case rest[0] == '?' || rest[0] == '#':
		return "/" + rest, true
	}
	return target, false // "/cp/kh_reseller_apix": another segment
}

// stripBasePath makes an origin-form target that repeats the upstream's
// base path (a client that used the API's documented URL) relative to it,
// so that it is signed and forwarded exactly as the /v1/... form.
func (p *Proxy) stripBasePath(target string) string {
	rel, _ := p.underBase(target)
	return rel
}

// relocateHeaders are the response headers whose URI khproxy maps back into
// its own path space.
var relocateHeaders = []string{"Location", "Content-Location"}

// relocate rewrites Location and Content-Location headers that point under
// the upstream's base, as an absolute path or as an absolute URL on the
// upstream's host, to a path relative to khproxy (/v1/orders/1006), so that
// a client can follow them through khproxy. Other values, and the body, are
// left alone.
func (p *Proxy) relocate(h http.Header) {
	for _, name := range relocateHeaders {
		vs := h[name]
		if len(vs) != 1 {
			continue
		}
		if local, ok := p.localURI(vs[0]); ok {
			h[name] = []string{local}
		}
	}
}

// localURI maps a URI reference from the upstream into khproxy's path space.
func (p *Proxy) localURI(ref string) (string, bool) {
	if strings.HasPrefix(ref, "/") && !strings.HasPrefix(ref, "//") {
		if p.basePath == "" {
			return ref, false // already in khproxy's path space
		}
		return p.underBase(ref)
	}
	scheme, rest, ok := strings.Cut(ref, "://")
	if !ok || !(strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")) {
		return ref, false
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if !sameHost(strings.ToLower(scheme), rest[:end], p.upstream.Scheme, p.upstream.Host) {
		return ref, false
	}
	path := rest[end:]
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	return p.underBase(path)
}

// sameHost reports whether two authorities (host[:port]) name the same
// server, with each scheme's default port filled in.
func sameHost(scheme1, host1, scheme2, host2 string) bool {
	return strings.EqualFold(withPort(scheme1, host1), withPort(scheme2, host2))
}

func withPort(scheme, host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		return host
	}
	if scheme == "https" {
		return host + ":443"
	}
	return host + ":80"
}
