package proxy_test

import (
	"strconv"
	"strings"
	"testing"
)

// TestEmptyBodiesGoOutWithFixedLength: bodies go upstream with a fixed
// length, as docs/calling-the-api.md says, an empty chunked one too: a POST, PUT or
// PATCH arrives with Content-Length: 0, a GET or DELETE with no body at
// all, never chunked.
func TestEmptyBodiesGoOutWithFixedLength(t *testing.T) {
	h := newHarness(t, nil)
	for _, tt := range []struct{ name, request string }{
		{"POST chunked, empty", "POST /v1/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"POST chunked with a trailer, empty", "POST /v1/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n"},
		{"PUT chunked, empty", "PUT /v1/things/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"PATCH chunked, empty", "PATCH /v1/things/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"DELETE chunked, empty", "DELETE /v1/things/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"GET chunked, empty", "GET /v1/things/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"POST Content-Length: 0", "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"},
		{"POST chunked, one byte", "POST /v1/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := h.rawOK(t, tt.request)
			want := strconv.Itoa(len(a.Body))
			if a.Method == "GET" || a.Method == "DELETE" {
				want = "" // no body: no length to state
			}
			if got := a.Header.Get("Content-Length"); a.Chunked || got != want || a.ContentLength != int64(len(a.Body)) {
				t.Errorf("arrived chunked %v with Content-Length %q for a body of %d bytes; want Content-Length %q", a.Chunked, got, len(a.Body), want)
			}
			if !strings.HasPrefix(tt.name, a.Method) {
				t.Errorf("arrived as %s", a.Method)
			}
		})
	}
}
