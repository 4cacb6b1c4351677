package apiroute

import (
	"fmt"
	"strings"
)

// Pattern is one route: an HTTP method and a path template in the syntax
// of Templates, "POST /v1/services/{id}/actions", where each {id} segment
// stands for one id segment exactly as Of reads it. It says which requests
// get an automatic Idempotency-Key (KH_IDEMPOTENT_ROUTES), and is meant for
// any other list of routes khproxy is given. Create it with ParsePattern or
// UnmarshalText. The zero Pattern matches nothing. A Pattern is a value,
// never changed once made, and safe for concurrent use.
type Pattern struct {
	method string
	path   string   // the template, "*" segments written as {id}
	segs   []string // path split at "/"
}

// ParsePattern parses "METHOD /path": an upper-case method and a path of
// non-empty segments, each either "{id}" (or "*", its older spelling) or
// letters, digits, "-", ".", "_" and "~" other than "." and "..", which is
// what a normalised path's segments can hold. Surrounding white space is
// ignored. The error quotes s and says what is wrong.
func ParsePattern(s string) (Pattern, error) {
	method, path, ok := strings.Cut(strings.TrimSpace(s), " ")
	path = strings.TrimSpace(path)
	if !ok || method == "" || path == "" {
		return Pattern{}, fmt.Errorf("route %q: want \"METHOD /path\", like \"POST /v1/orders\"", s)
	}
	if strings.ContainsFunc(method, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		return Pattern{}, fmt.Errorf("route %q: the method must be an upper-case HTTP method, like POST", s)
	}
	if !strings.HasPrefix(path, "/") {
		return Pattern{}, fmt.Errorf("route %q: the path must start with /", s)
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs[1:] {
		switch {
		case seg == "*" || seg == idSegment:
			segs[i+1] = idSegment
		case !isID(seg):
			return Pattern{}, fmt.Errorf("route %q: path segment %q must be {id} (or *), or letters, digits, -, ., _ and ~ (no empty, dot or percent-encoded segments, query or fragment)", s, seg)
		}
	}
	return Pattern{method: method, path: strings.Join(segs, "/"), segs: segs}, nil
}

// Method returns the pattern's method, "" for the zero Pattern.
func (p Pattern) Method() string { return p.method }

// Path returns the pattern's path template, with {id} for each id segment
// ("*" in the parsed text included); "" for the zero Pattern.
func (p Pattern) Path() string { return p.path }

// String returns the pattern as "METHOD /path", which ParsePattern reads
// back; "" for the zero Pattern.
func (p Pattern) String() string {
	if p.method == "" {
		return ""
	}
	return p.method + " " + p.path
}

// UnmarshalText parses text as ParsePattern does.
func (p *Pattern) UnmarshalText(text []byte) error {
	q, err := ParsePattern(string(text))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// MarshalText returns String's text.
func (p Pattern) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Match reports whether a request with method and path is this route:
// method compared exactly (methods are case-sensitive), path as Of reads
// it (as khproxy sends it, without the base path; a query is ignored). A
// request that matches a Pattern built from a template has Of(path) equal
// to that template.
func (p Pattern) Match(method, path string) bool {
	if p.method == "" || method != p.method {
		return false
	}
	path, _, _ = strings.Cut(path, "?")
	return matchPath(p.segs, path, isID)
}

// MatchAny reports whether a request with method and path matches one of
// patterns, and returns the first it matches.
func MatchAny(patterns []Pattern, method, path string) (Pattern, bool) {
	for _, p := range patterns {
		if p.Match(method, path) {
			return p, true
		}
	}
	return Pattern{}, false
}
