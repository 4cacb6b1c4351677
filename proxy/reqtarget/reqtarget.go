// Package reqtarget turns the request-target a client sent on its request
// line into the exact path and query that khproxy signs, and the upstream
// URL it sends them to; it refuses the forms that could reach the API
// somewhere other than where they were signed for. It also maps the URI
// references the upstream sends back (Location) into khproxy's path space.
//
// The API's documentation gives full URLs, .../cp/kh_reseller_api/v1/orders,
// and its Location headers point there too, while khproxy's clients address
// it with paths relative to the upstream's base, /v1/orders. A Base
// translates between the two path spaces, the way reverse proxies do
// (Apache's ProxyPassReverse): a request path under the base path is taken
// relative to it, and a Location pointing under it is given back relative
// to khproxy.
//
// It also puts the path in the one spelling that khproxy signs, labels and
// matches against routes (package apiroute): percent-encoded unreserved
// characters are decoded (RFC 3986 §6.2.2.2: /v1/%6Frders is /v1/orders to
// any RFC 3986 server, so it must be signed, keyed and labelled as
// /v1/orders), and paths with empty segments (/v1//orders, /v1/orders/),
// which some servers collapse, are refused.
//
// The package knows nothing of HTTP servers, requests, signing or how a
// refusal is answered: it works on strings and reports ErrNotAPath,
// ErrNetworkPath, ErrBadEscape, ErrDotSegment or ErrEmptySegment.
package reqtarget

import (
	"errors"
	"net/url"
	"strings"

	"khproxy/apiroute"
)

// The reasons Resolve refuses a request-target. Their text is for logs and
// tests; what the client is told is the caller's choice.
var (
	// ErrNotAPath: the target is neither a path ("/v1/products") nor an
	// absolute URL ("http://host/v1/products"): "*", "host:443", "".
	ErrNotAPath = errors.New("request target is not a path")
	// ErrNetworkPath: the path, after the base path, starts with "//",
	// which a URL parser reads as an authority.
	ErrNetworkPath = errors.New("request path starts with //")
	// ErrBadEscape: a "%" in the path starts no valid %XX escape.
	ErrBadEscape = errors.New("request path has an invalid percent-encoding")
	// ErrDotSegment: the path has a "." or ".." segment, raw or
	// percent-encoded at any depth.
	ErrDotSegment = errors.New(`request path has a "." or ".." segment`)
	// ErrEmptySegment: the path, after the base path, has an empty
	// segment: "//" inside it, or a trailing "/" after anything but the
	// root ("/v1/orders/").
	ErrEmptySegment = errors.New("request path has an empty segment (// or a trailing /)")
)

// Base is the upstream's base URL, against which request-targets are
// resolved: its scheme, its host and its path (the base path, such as
// /cp/kh_reseller_api). Create it with NewBase. The zero Base has no
// scheme, host or base path: every path is under it, and the URLs it
// resolves hold a path and query only. A Base is never changed once made,
// and is safe for concurrent use.
type Base struct {
	scheme, host string
	path         string // the base path as the upstream URL escapes it, without a trailing slash
	unescaped    string // the base path decoded, without a trailing slash
}

// NewBase returns the Base of upstream, which must not be nil. A trailing
// slash of upstream's path is not part of the base path.
func NewBase(upstream *url.URL) Base {
	return Base{
		scheme:    upstream.Scheme,
		host:      upstream.Host,
		path:      strings.TrimSuffix(upstream.EscapedPath(), "/"),
		unescaped: strings.TrimSuffix(upstream.Path, "/"),
	}
}

// Target is a request-target resolved against a Base.
type Target struct {
	// Path is the target relative to the base path, path and, when the
	// client sent one, "?" and query: "/v1/orders?page=2". The client's
	// escaping is kept byte for byte, with two exceptions in the path:
	// percent-encoded unreserved characters (letters, digits, "-", ".",
	// "_", "~") are decoded ("/v1/%6Frders" is "/v1/orders"), and bytes
	// that may not appear raw in a path (such as unencoded UTF-8) are
	// percent-encoded. The query is kept as sent. It is what khproxy signs
	// and what package apiroute matches. When Resolve fails with
	// ErrNetworkPath or ErrBadEscape it holds the target as sent, relative
	// to the base, and with ErrDotSegment or ErrEmptySegment the target as
	// it would have been; either is for a log line only. With ErrNotAPath
	// it is "".
	Path string
	// URL is the upstream URL: the Base's scheme and host, the base path
	// followed by Path, and Path's query, sent as is. Its RawPath is set,
	// so URL.RequestURI is the base path followed by Path exactly. It is
	// nil when Resolve fails, and new on every call: the caller may keep
	// or change it.
	URL *url.URL
}

// Resolve resolves requestURI, the request-target a client sent (an
// http.Request's RequestURI), against b. An origin-form target
// ("/v1/orders") and an absolute-form one ("http://any.host/v1/orders",
// what clients send to a forward proxy; the scheme and authority are
// dropped: the request goes to the upstream whatever the client named)
// are taken relative to the base path when they repeat it, whole segment
// by whole segment ("/cp/kh_reseller_api/v1/orders" is "/v1/orders"), so
// that a client using the API's documented URL sends the same request.
//
// It fails with ErrNotAPath, ErrNetworkPath, ErrBadEscape, ErrDotSegment
// or ErrEmptySegment, checked in that order; see Target.Path for what it
// returns then. A Target it returns without error never has a dot segment
// in its path, in any decoding of it, nor an empty segment, nor a
// percent-encoded unreserved character.
func (b Base) Resolve(requestURI string) (Target, error) {
	target, err := originForm(requestURI)
	if err != nil {
		return Target{}, err
	}
	target, _ = b.under(target)
	if strings.HasPrefix(target, "//") {
		return Target{Path: target}, ErrNetworkPath
	}
	rawPath, rawQuery, hasQuery := strings.Cut(target, "?")
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		return Target{Path: target}, ErrBadEscape
	}
	// Being a valid encoding of Path, RawPath is what URL.RequestURI, which
	// the transport writes, returns.
	escaped := decodeUnreserved(escapePath(rawPath))
	t := Target{Path: escaped}
	if hasQuery {
		t.Path += "?" + rawQuery
	}
	if hasDotSegment(escaped) {
		return t, ErrDotSegment
	}
	if hasEmptySegment(escaped) {
		return t, ErrEmptySegment
	}
	t.URL = &url.URL{
		Scheme:     b.scheme,
		Host:       b.host,
		Path:       b.unescaped + path,
		RawPath:    b.path + escaped,
		RawQuery:   rawQuery,
		ForceQuery: hasQuery && rawQuery == "",
	}
	return t, nil
}

// originForm returns the path and query of a request-target exactly as the
// client sent them. An absolute-form target loses its scheme and authority.
func originForm(requestURI string) (string, error) {
	if strings.HasPrefix(requestURI, "/") {
		return requestURI, nil
	}
	if _, rest, ok := strings.Cut(requestURI, "://"); ok {
		i := strings.IndexAny(rest, "/?")
		switch {
		case i < 0:
			return "/", nil
		case rest[i] == '?':
			return "/" + rest[i:], nil
		default:
			return rest[i:], nil
		}
	}
	return "", ErrNotAPath
}

// escapePath percent-encodes the bytes of a raw request path that RFC 3986
// does not allow in a path, and keeps everything else, existing %XX escapes
// included, exactly as it is.
func escapePath(raw string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if pathByteAllowed(c) {
			if b.Len() > 0 {
				b.WriteByte(c)
			}
			continue
		}
		if b.Len() == 0 {
			b.Grow(len(raw) + 16)
			b.WriteString(raw[:i])
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	if b.Len() == 0 {
		return raw
	}
	return b.String()
}

// decodeUnreserved decodes the %XX escapes of an escaped path that stand
// for unreserved characters (RFC 3986 §2.3, §6.2.2.2), in either case of
// hex digit, and keeps every other byte, other escapes included, as it is.
func decodeUnreserved(escaped string) string {
	return apiroute.Unescape(escaped, unreserved)
}

// unreserved reports whether c is an unreserved character of RFC 3986
// §2.3: a letter, a digit, "-", ".", "_" or "~".
func unreserved(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == '_' || c == '~'
}

// hasEmptySegment reports whether an escaped path has "//" in it or ends in
// "/" after more than the root. Servers differ on such paths (many collapse
// "//", some drop a trailing "/"), so /v1//orders could be POST /v1/orders
// to the API while it is no route to khproxy; the API has no such paths.
func hasEmptySegment(escaped string) bool {
	return strings.Contains(escaped, "//") || (len(escaped) > 1 && strings.HasSuffix(escaped, "/"))
}

// pathByteAllowed reports whether c may appear raw in a path: unreserved,
// sub-delims, ":", "@", "/" and the "%" of an escape.
func pathByteAllowed(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0
}
