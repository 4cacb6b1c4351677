package reqtarget

import "strings"

// under returns target (a raw path with optional ?query or #fragment)
// relative to b's base path, and whether it was under it: with base
// /cp/kh_reseller_api, "/cp/kh_reseller_api/v1/orders?x" is "/v1/orders?x".
// Only a whole base path segment matches, byte for byte as the upstream URL
// escapes it. With no base path every path is under it.
func (b Base) under(target string) (string, bool) {
	rest, ok := strings.CutPrefix(target, b.path)
	switch {
	case !ok:
		return target, false
	case rest == "":
		return "/", true
	case rest[0] == '/':
		return rest, true
	case rest[0] == '?' || rest[0] == '#':
		return "/" + rest, true
	}
	return target, false // "/cp/kh_reseller_apix": another segment
}

// Relocate maps ref, a URI reference the upstream sent (the value of a
// Location or Content-Location header), into khproxy's path space. When ref
// points under the base path, as an absolute path or as an absolute http or
// https URL on the Base's host (scheme and host compared without regard to
// case, each scheme's default port filled in), Relocate returns the path,
// query and fragment relative to the base path and true:
// "https://api.example/cp/kh_reseller_api/v1/orders/1006#x" is
// "/v1/orders/1006#x". Otherwise it returns ref unchanged and false: a
// relative or network-path reference, another host or port, a path outside
// the base, or, when the base path is empty, any absolute path (already in
// khproxy's path space).
func (b Base) Relocate(ref string) (string, bool) {
	if strings.HasPrefix(ref, "/") && !strings.HasPrefix(ref, "//") {
		if b.path == "" {
			return ref, false // already in khproxy's path space
		}
		return b.under(ref)
	}
	scheme, rest, ok := strings.Cut(ref, "://")
	if !ok || !(strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")) {
		return ref, false
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if !sameHost(strings.ToLower(scheme), rest[:end], b.scheme, b.host) {
		return ref, false
	}
	path := rest[end:]
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	if rel, ok := b.under(path); ok {
		return rel, true
	}
	return ref, false
}

// sameHost reports whether two authorities (host[:port]) name the same
// server, with each scheme's default port filled in.
func sameHost(scheme1, host1, scheme2, host2 string) bool {
	return strings.EqualFold(withPort(scheme1, host1), withPort(scheme2, host2))
}

func withPort(scheme, host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		return host
	}
	if scheme == "https" {
		return host + ":443"
	}
	return host + ":80"
}
