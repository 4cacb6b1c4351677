package proxy

import (
	"fmt"
	"net/url"
	"strings"
)

// resolveTarget works out, from the client's request-target, the path that is
// signed (ex.target) and the upstream URL (ex.url).
func (p *Proxy) resolveTarget(ex *exchange, requestURI string) error {
	target, err := originForm(requestURI)
	if err != nil {
		return &Error{Kind: KindBadRequest, Detail: err.Error()}
	}
	ex.target = target // for the log, until the upstream target is known
	if strings.HasPrefix(target, "//") {
		return &Error{Kind: KindBadRequest, Detail: "request path must not start with //"}
	}
	rawPath, rawQuery, hasQuery := strings.Cut(target, "?")
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		return &Error{Kind: KindBadRequest, Detail: "request path has an invalid percent-encoding"}
	}
	// The client's escaping is kept byte for byte; only bytes that may not
	// appear raw in a path (such as unencoded UTF-8) are percent-encoded.
	// Being a valid encoding of Path, RawPath is what URL.RequestURI, which
	// the transport writes, returns; the query is sent as is.
	escaped := escapePath(rawPath)
	ex.target = escaped
	if hasQuery {
		ex.target += "?" + rawQuery
	}
	ex.url = &url.URL{
		Scheme:     p.upstream.Scheme,
		Host:       p.upstream.Host,
		Path:       p.basePathUnescaped + path,
		RawPath:    p.basePath + escaped,
		RawQuery:   rawQuery,
		ForceQuery: hasQuery && rawQuery == "",
	}
	return nil
}

// originForm returns the path and query of a request-target exactly as the
// client sent them. An absolute-form target (what clients send to a forward
// proxy) loses its scheme and authority: the request goes to the upstream
// whatever the client named.
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
	return "", fmt.Errorf("request target %q is not a path: send requests like GET /v1/products", requestURI)
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

// pathByteAllowed reports whether c may appear raw in a path: unreserved,
// sub-delims, ":", "@", "/" and the "%" of an escape.
func pathByteAllowed(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0
}
