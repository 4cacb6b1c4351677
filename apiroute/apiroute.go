// Package apiroute names requests by the KernelHost Reseller API's route
// templates (spec §5), such as /v1/services/{id}, for metric labels and the
// access log. The list is fixed: any other path is Other, and any other
// method is Other, so that label values stay a small, known set whatever
// clients send.
//
// The package knows the API's paths and nothing else: it does not route,
// authorise or judge a request.
package apiroute

import (
	"net/http"
	"net/url"
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

// Templates returns a new slice with every route template, in the order of
// the spec's endpoint table. Of never returns anything else but Other.
func Templates() []string { return slices.Clone(templates) }

// Of returns the template that path matches, or Other. path is a request
// path as the client sent it (percent-encoded; a query is ignored).
//
// Matching is strict: segments compare after percent-decoding (so
// /v1/%70roducts is /v1/products, as for any RFC 3986 server), and an {id}
// is one segment of letters, digits, "_", "-", "." or "~" that is not "."
// or "..". Empty segments (// or a trailing /), dot segments, an encoded "/"
// and differences in case all give Other. Of is safe for concurrent use.
func Of(path string) string {
	path, _, _ = strings.Cut(path, "?")
	if !strings.HasPrefix(path, "/v1/") {
		return Other
	}
	segs := strings.Split(path, "/")
	if len(segs) > 6 { // the longest template has 5 segments after the root
		return Other
	}
	for i, s := range segs {
		if strings.IndexByte(s, '%') < 0 {
			continue
		}
		u, err := url.PathUnescape(s)
		if err != nil {
			return Other
		}
		segs[i] = u
	}
	for i, t := range split {
		if match(t, segs) {
			return templates[i]
		}
	}
	return Other
}

func match(tmpl, segs []string) bool {
	if len(tmpl) != len(segs) {
		return false
	}
	for i, t := range tmpl {
		if t == "{id}" {
			if !isID(segs[i]) {
				return false
			}
			continue
		}
		if t != segs[i] {
			return false
		}
	}
	return true
}

// isID reports whether s can be an {id} segment.
func isID(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == '~':
		default:
			return false
		}
	}
	return true
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
