// Package apiroute is khproxy's one rule for which API route a request is:
// the KernelHost Reseller API's route templates (spec §5), such as
// /v1/services/{id}, name requests in metric labels and the access log, and
// route patterns in the same syntax ("POST /v1/services/{id}/actions") say
// which requests get an automatic Idempotency-Key. Whatever later needs to
// know a request's route (an allow-list of routes, say) uses Pattern too, so
// that no two parts of khproxy can disagree about it.
//
// Matching is exact, byte for byte, on the path as khproxy sends it upstream:
// package reqtarget has already decoded percent-encoded unreserved
// characters (RFC 3986 §6.2.2.2) and refused dot segments and empty
// segments, so a path that is spelled differently but means the same to an
// RFC 3986 server reaches this package in one spelling. Resembles catches
// the spellings that some servers read as an API route although RFC 3986
// does not (other case, encoded slashes, ";" parameters).
//
// The template list is fixed: any other path is Other, and any other method
// is Other, so that label values stay a small, known set whatever clients
// send. The package knows the API's paths and nothing else: it does not
// route, authorise or judge a request.
package apiroute

import (
	"net/http"
	"slices"
	"strings"
)

// Other is the route or method of a request that is not in the fixed lists.
const Other = "other"

// templates are the paths of spec §5, in its order. {id} stands for one
// path segment.
var templates = []string{
	"/v1/health",
	"/v1/me",
	"/v1/products",
	"/v1/products/{id}",
	"/v1/orders",
	"/v1/orders/{id}",
	"/v1/services",
	"/v1/services/{id}",
	"/v1/services/{id}/credentials",
	"/v1/services/{id}/actions",
	"/v1/billing/balance",
	"/v1/billing/invoices",
	"/v1/billing/invoices/{id}/pdf",
	"/v1/webhooks",
}

// split holds templates split at "/", built once.
var split = func() [][]string {
	s := make([][]string, len(templates))
	for i, t := range templates {
		s[i] = strings.Split(t, "/")
	}
	return s
}()

// maxSegments is the most "/"-separated parts of any template, the empty
// one before the first "/" included.
const maxSegments = 6

// Templates returns a new slice with every route template, in the order of
// the spec's endpoint table. Of never returns anything else but Other.
func Templates() []string { return slices.Clone(templates) }

// Of returns the template that path matches, or Other. path is a request
// path as khproxy sends it, without the upstream's base path (a query is
// ignored).
//
// Matching is exact: literal segments compare byte for byte, and an {id} is
// one segment of letters, digits, "_", "-", "." or "~" that is not "." or
// "..". A percent-encoded character, an empty segment (// or a trailing /)
// and a difference in case all give Other. Of is safe for concurrent use.
func Of(path string) string {
	path, _, _ = strings.Cut(path, "?")
	if !strings.HasPrefix(path, "/v1/") || strings.Count(path, "/") >= maxSegments {
		return Other
	}
	for i, t := range split {
		if matchPath(t, path, isID) {
			return templates[i]
		}
	}
	return Other
}

// matchPath reports whether path, split at "/", has as many segments as
// tmpl and each fits its template segment: equal bytes, or, for "{id}", a
// segment id accepts.
func matchPath(tmpl []string, path string, id func(string) bool) bool {
	i := 0
	for seg := range strings.SplitSeq(path, "/") {
		if i == len(tmpl) {
			return false
		}
		if t := tmpl[i]; t == idSegment {
			if !id(seg) {
				return false
			}
		} else if t != seg {
			return false
		}
		i++
	}
	return i == len(tmpl)
}

// idSegment is the template segment that stands for one id.
const idSegment = "{id}"

// isID reports whether s can be an {id} segment.
func isID(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			return false
		}
	}
	return true
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

// methods are the methods a label may name; the API uses GET, POST and PUT,
// the rest are what well-meaning clients send.
var methods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// Method returns m when it is a standard HTTP method other than CONNECT and
// TRACE (compared exactly: methods are case-sensitive), else Other. It is
// safe for concurrent use.
func Method(m string) string {
	if slices.Contains(methods, m) {
		return m
	}
	return Other
}
