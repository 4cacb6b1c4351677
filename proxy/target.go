package proxy

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"khproxy/apiroute"
	"khproxy/proxy/reqtarget"
)

// resolveTarget works out, from the client's request-target, the target after
// the base path (ex.target, which is signed unless SignFullPath), with
// SignFullPath the whole upstream request-target that is signed instead
// (ex.signed), and the upstream URL (ex.url), and refuses a target
// that reqtarget refuses. A refused target that was read as a path is kept
// in ex.target for the log.
func (p *Proxy) resolveTarget(ex *exchange, requestURI string) error {
	t, err := p.base.Resolve(requestURI)
	ex.target = t.Path
	if err != nil {
		return targetRefusal(err, requestURI)
	}
	ex.url = t.URL
	if p.signFull {
		ex.signed = t.URL.RequestURI() // the base path, then t.Path, byte for byte as sent
	}
	return nil
}

// targetRefusal maps reqtarget's reasons for refusing a request-target to
// what the client is told: always a bad request, with a detail that says
// what to send instead.
func targetRefusal(err error, requestURI string) *Error {
	detail := err.Error()
	switch {
	case errors.Is(err, reqtarget.ErrNotAPath):
		detail = fmt.Sprintf("request target %q is not a path: send requests like GET /v1/products", requestURI)
	case errors.Is(err, reqtarget.ErrNetworkPath):
		detail = "request path must not start with //"
	case errors.Is(err, reqtarget.ErrBadEscape):
		detail = "request path has an invalid percent-encoding"
	case errors.Is(err, reqtarget.ErrDotSegment):
		detail = `request path has a "." or ".." segment (raw or percent-encoded): the API has no such paths`
	case errors.Is(err, reqtarget.ErrEmptySegment):
		detail = "request path has an empty segment (// or a trailing /): the API has no such paths; send it without, like /v1/orders"
	}
	return &Error{Kind: KindBadRequest, Detail: detail}
}

// checkRoute refuses, before anything is read or sent, a request that an
// API could take for one of its routes while package apiroute, which
// decides the route for automatic keys, metrics and logs, does not: a
// method that is not upper case (methods are case-sensitive, RFC 9110
// §9.1, but some servers upper-case them), or a path that matches no
// route but resembles one (apiroute.Resembles: other case, "%2F", ";"
// parameters). Sent, it could place an order without the Idempotency-Key
// its route gets.
func checkRoute(method, target string) error {
	if strings.ContainsFunc(method, unicode.IsLower) {
		return &Error{Kind: KindBadRequest, Detail: fmt.Sprintf("the method %q is not upper case: methods are case-sensitive; send %s", method, strings.ToUpper(method))}
	}
	path, _, _ := strings.Cut(target, "?")
	if tmpl, ok := apiroute.Resembles(path); ok {
		return &Error{Kind: KindBadRequest, Detail: fmt.Sprintf("the path %q is not an API path but resembles %s: send it spelled exactly as the API documents it", path, tmpl)}
	}
	return nil
}
