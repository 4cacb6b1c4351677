package proxy

import "net/http"

// Requests that could mean one thing to khproxy and another to something
// between it and the API are refused, or their connection is closed. The
// request-target's part of that (dot segments, raw or encoded) is
// reqtarget's; this is the framing's, which only the http.Request shows.

// framingUnclear reports whether the connection must be closed after r
// because a front end could have framed it differently (request smuggling,
// RFC 9112 §6.1 and §11.2). Go's server hides the evidence from handlers:
// given both Transfer-Encoding and Content-Length it deletes Content-Length
// and reads the body chunked; on HTTP/1.0 it deletes Transfer-Encoding and
// reads by Content-Length. So every chunked and every HTTP/1.0 request
// closes its connection, and whatever followed it there is never read as a
// request.
func framingUnclear(r *http.Request) bool {
	return len(r.TransferEncoding) > 0 || !r.ProtoAtLeast(1, 1)
}
