package guard

import (
	"fmt"
	"slices"
	"strings"

	"khproxy/apiroute"
)

// checkRoute returns why r cannot be on the allow-list, or nil: its method
// must be one apiroute names, its path one of the API's route templates
// (a path nobody can match would refuse silently what the operator meant
// to allow).
func checkRoute(r apiroute.Pattern) error {
	if apiroute.Method(r.Method()) == apiroute.Other {
		return fmt.Errorf("route %q: method %q is not one khproxy can allow", r, r.Method())
	}
	if !slices.Contains(apiroute.Templates(), r.Path()) {
		return fmt.Errorf("route %q: %q is not an API route (one of %s)", r, r.Path(), strings.Join(apiroute.Templates(), ", "))
	}
	return nil
}

// allowList is the set of routes the app may call, as "METHOD template";
// nil allows every route.
type allowList map[string]bool

// allows reports whether method on the route template route may be sent.
func (a allowList) allows(method, route string) bool {
	return a == nil || a[method+" "+route]
}
