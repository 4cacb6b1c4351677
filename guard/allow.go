package guard

import (
	"fmt"
	"slices"
	"strings"

	"khproxy/apiroute"
)

// Route is one allow-list entry: an HTTP method and an API route template
// of package apiroute, such as GET /v1/products/{id}.
//
// Parsing is kept here, small, until apiroute owns a route type of its own.
type Route struct {
	Method string
	Path   string
}

// String writes r as "METHOD /path".
func (r Route) String() string { return r.Method + " " + r.Path }

// checkRoute returns why r cannot be on the allow-list, or nil: its method
// must be one apiroute names, its path one of the API's route templates
// (a path nobody can match would refuse silently what the operator meant
// to allow).
func checkRoute(r Route) error {
	if apiroute.Method(r.Method) == apiroute.Other {
		return fmt.Errorf("route %q: method %q is not one khproxy can allow", r, r.Method)
	}
	if !slices.Contains(apiroute.Templates(), r.Path) {
		hint := ""
		if strings.Contains(r.Path, "*") {
			hint = "; write an id segment as {id}"
		}
		return fmt.Errorf("route %q: %q is not an API route (one of %s)%s", r, r.Path, strings.Join(apiroute.Templates(), ", "), hint)
	}
	return nil
}

// allowList is the set of routes the app may call; nil allows every route.
type allowList map[Route]bool

// allows reports whether method on the route template route may be sent.
func (a allowList) allows(method, route string) bool {
	return a == nil || a[Route{Method: method, Path: route}]
}
