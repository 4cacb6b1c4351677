package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"khproxy/problem"
)

// khproxy is not an HTTPS proxy: in a CONNECT tunnel the client speaks TLS
// with the API end to end, and nothing could be signed. A client pointed at
// khproxy through HTTPS_PROXY or curl -x gets 405, and the answer must say
// why where clients show it. Clients show little of a failed CONNECT: curl
// prints "CONNECT tunnel failed, response 405" (and the status line and
// headers with -v); Python's http.client (so urllib and requests) and httpx
// print the status line's reason phrase. So the explanation goes into the
// reason phrase, a Proxy-Status header (RFC 9209) and the problem+json body.

// allowedMethods is the Allow header of the 405: khproxy forwards any method
// but CONNECT.
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// connectRefusal is the error that answers a CONNECT request.
func connectRefusal(r *http.Request) *Error {
	return &Error{Kind: KindMethodNotAllowed, Detail: connectReason(r) +
		". It cannot sign inside a TLS tunnel; keep it out of HTTPS_PROXY (see NO_PROXY)"}
}

// connectReason is the reason phrase of the answer to CONNECT: what to do,
// with the address the client should send plain HTTP to.
func connectReason(r *http.Request) string {
	addr := "khproxy's address"
	switch a, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr); {
	case a == nil:
	case a.Network() == "unix":
		addr = "khproxy's Unix socket" // a path is no URL, and would leak the layout
	default:
		addr = "http://" + a.String()
	}
	return "khproxy is not an HTTPS proxy: send plain HTTP to " + addr + "/v1/... instead"
}

// writeConnectRefusal writes the 405 problem for a CONNECT request, with
// connectReason as the reason phrase, which net/http cannot set, on the
// hijacked connection, and closes it. It reports false, having
// written nothing, when the connection cannot be hijacked (HTTP/2); the
// caller then writes the plain problem.
func (p *Proxy) writeConnectRefusal(w http.ResponseWriter, r *http.Request, body problem.Details) bool {
	rc := http.NewResponseController(w)
	conn, brw, err := rc.Hijack()
	if err != nil {
		return false
	}
	defer conn.Close()
	if rec, ok := w.(*recorder); ok {
		rec.status = body.Status // for the access log
	}
	status, h, b := problem.Render(body)
	h.Set("Allow", allowedMethods)
	h.Set("Proxy-Status", "khproxy; error=http_request_denied; details="+strconv.Quote(body.Detail))
	h.Set("Date", p.now().UTC().Format(http.TimeFormat))
	resp := &http.Response{
		Status:        strconv.Itoa(status) + " " + connectReason(r),
		StatusCode:    status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)),
		Close:         true,
	}
	if resp.Write(brw) != nil || brw.Flush() != nil {
		return true // the client is gone; nothing more to say
	}
	// Half-close and read what the client still sends for a moment, so that
	// closing does not reset the connection before the answer is read.
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
	}
	return true
}
