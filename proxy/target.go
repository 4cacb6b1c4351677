package proxy

import (
	"errors"
	"fmt"

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
	}
	return &Error{Kind: KindBadRequest, Detail: detail}
}
