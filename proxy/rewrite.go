package proxy

import (
	"errors"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"

	"khproxy/proxy/upstream"
)

// forwardingHeaders are client headers that ReverseProxy drops before
// Rewrite; khproxy forwards them unchanged, as any other client header.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// rewrite points the outgoing request at the upstream, byte for byte.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeFrom(pr.In.Context())
	u := *ex.url
	pr.Out.URL = &u
	pr.Out.Host = ""
	named := connectionTokens(pr.In.Header)
	for _, h := range forwardingHeaders {
		if v, ok := pr.In.Header[h]; ok && !named[h] {
			pr.Out.Header[h] = v
		}
	}
	// The body is already here in full; an upstream 100-continue round
	// trip would only add latency.
	pr.Out.Header.Del("Expect")
	// ReverseProxy re-adds an Upgrade the client asked for; the API has no
	// protocol to switch to, and a switched connection could not be signed.
	if _, ok := pr.Out.Header["Upgrade"]; ok {
		pr.Out.Header.Del("Upgrade")
		pr.Out.Header.Del("Connection")
	}
}

// connectionTokens returns the canonical header names a Connection header
// lists, which are hop-by-hop for this request.
func connectionTokens(h http.Header) map[string]bool {
	if len(h["Connection"]) == 0 {
		return nil // most requests: no map to allocate
	}
	named := map[string]bool{}
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				named[textproto.CanonicalMIMEHeaderKey(tok)] = true
			}
		}
	}
	return named
}

// modifyResponse tells the client which Idempotency-Key was used, maps a
// Location into khproxy's path space and notes the upstream request id for
// the access log.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	p.relocate(resp.Header)
	ex := exchangeFrom(resp.Request.Context())
	if ex == nil {
		return nil
	}
	ex.apiRequestID = resp.Header.Get("X-Request-Id")
	// khproxy's own id names this request; an upstream's header of that
	// name would add a second value.
	resp.Header.Del(RequestIDHeader)
	ex.upstreamStatus = resp.StatusCode
	if ex.idemKey != "" {
		resp.Header.Set("Idempotency-Key", ex.idemKey)
	}
	if ex.autoKey && (upstream.InDoubt(resp) || resp.StatusCode == http.StatusConflict) {
		// The retries are spent and the key is not settled: the caller
		// must not take this answer as the result (errorHandler answers
		// in_doubt, and the flight keeps the key for its retry). A 409
		// to a key khproxy made for this body can only mean that the
		// request is still in progress, whatever the API calls it.
		return errInDoubtAnswer
	}
	return nil
}

// errInDoubtAnswer stands for an API answer that left an automatic-key
// request in doubt.
var errInDoubtAnswer = errors.New("the API's last answer settles nothing")

// relocateHeaders are the response headers whose URI khproxy maps back into
// its own path space.
var relocateHeaders = []string{"Location", "Content-Location"}

// relocate rewrites Location and Content-Location headers that point under
// the upstream's base, as an absolute path or as an absolute URL on the
// upstream's host, to a path relative to khproxy (/v1/orders/1006), so that
// a client can follow them through khproxy (reqtarget.Base.Relocate). Other
// values, and the body, are left alone.
func (p *Proxy) relocate(h http.Header) {
	for _, name := range relocateHeaders {
		vs := h[name]
		if len(vs) != 1 {
			continue
		}
		if local, ok := p.base.Relocate(vs[0]); ok {
			h[name] = []string{local}
		}
	}
}
