package proxy

import "strings"

// Route names requests that get an automatic Idempotency-Key: an uppercase
// method and an escaped path without query, where a "*" segment matches
// exactly one non-empty segment ("POST /v1/services/*/actions").
type Route struct {
	Method string
	Path   string
}

// String returns the route as "METHOD /path".
func (r Route) String() string { return r.Method + " " + r.Path }

// routeSet matches requests against routes. Immutable after newRouteSet.
type routeSet [][]string // per route: method, then path segments

func newRouteSet(routes []Route) routeSet {
	set := make(routeSet, 0, len(routes))
	for _, r := range routes {
		set = append(set, append([]string{r.Method}, strings.Split(r.Path, "/")...))
	}
	return set
}

// match reports whether method and path (escaped, without query) fit a route.
func (s routeSet) match(method, path string) bool {
	segs := strings.Split(path, "/")
	for _, r := range s {
		if r[0] == method && matchSegments(r[1:], segs) {
			return true
		}
	}
	return false
}

func matchSegments(pattern, segs []string) bool {
	if len(pattern) != len(segs) {
		return false
	}
	for i, want := range pattern {
		if want == "*" && segs[i] != "" {
			continue
		}
		if segs[i] != want {
			return false
		}
	}
	return true
}
