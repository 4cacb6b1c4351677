package reqtarget_test

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"khproxy/proxy/reqtarget"
)

// FuzzResolve resolves arbitrary request-targets and checks what Resolve
// promises: it refuses with one of its errors and no URL, or gives a URL on
// the upstream, under the base path, whose request-target is the base path
// followed by Path, with no dot segment in any decoding, with the client's
// query as sent, with no empty segment and no percent-encoded unreserved
// character in its path; and Path, resolved again against no base path, is itself.
func FuzzResolve(f *testing.F) {
	for _, tt := range resolveCases {
		f.Add(tt.target)
	}
	upstream, err := url.Parse("http://" + upHost + basePath)
	if err != nil {
		f.Fatal(err)
	}
	base := reqtarget.NewBase(upstream)
	plain := reqtarget.NewBase(&url.URL{Scheme: "http", Host: upHost})
	f.Fuzz(func(t *testing.T, target string) {
		got, err := base.Resolve(target)
		if err != nil {
			if !errors.Is(err, reqtarget.ErrNotAPath) && !errors.Is(err, reqtarget.ErrNetworkPath) &&
				!errors.Is(err, reqtarget.ErrBadEscape) && !errors.Is(err, reqtarget.ErrDotSegment) &&
				!errors.Is(err, reqtarget.ErrEmptySegment) {
				t.Fatalf("Resolve(%q): unexpected error %v", target, err)
			}
			if got.URL != nil {
				t.Fatalf("Resolve(%q) failed (%v) but gave the URL %v", target, err, got.URL)
			}
			return
		}
		u := got.URL
		if u == nil || u.Scheme != upstream.Scheme || u.Host != upstream.Host {
			t.Fatalf("Resolve(%q): URL %v is not on the upstream", target, u)
		}
		uri := u.RequestURI()
		if uri != basePath+got.Path {
			t.Fatalf("Resolve(%q): request-target %q, want the base path and Path %q", target, uri, got.Path)
		}
		path, query, hasQuery := strings.Cut(uri, "?")
		if !strings.HasPrefix(path, basePath+"/") || strings.HasPrefix(got.Path, "//") {
			t.Fatalf("Resolve(%q): request-target %q is not under the base %s", target, uri, basePath)
		}
		if hasDots(path) {
			t.Fatalf("Resolve(%q): request-target %q has a dot segment", target, uri)
		}
		rel, _, _ := strings.Cut(got.Path, "?")
		if strings.Contains(rel, "//") || (rel != "/" && strings.HasSuffix(rel, "/")) {
			t.Fatalf("Resolve(%q): path %q has an empty segment", target, rel)
		}
		if m := encodedUnreserved.FindString(rel); m != "" {
			t.Fatalf("Resolve(%q): path %q keeps the encoded unreserved character %s", target, rel, m)
		}
		if hasQuery && !strings.HasSuffix(target, "?"+query) {
			t.Fatalf("Resolve(%q): query %q is not the client's", target, query)
		}
		if again, err := plain.Resolve(got.Path); err != nil || again.Path != got.Path {
			t.Fatalf("Resolve(%q) = %q, which resolves again to %q, %v", target, got.Path, again.Path, err)
		}
	})
}

// encodedUnreserved finds a percent-encoded unreserved character (RFC 3986
// §2.3) in either case of hex digit.
var encodedUnreserved = regexp.MustCompile(`%(?i:4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|3[0-9]|2D|2E|5F|7E)`)

// hasDots reports whether path, decoded with url.PathUnescape as long as it
// decodes and changes, ever has a "/./" or "/../", counting backslashes as
// slashes.
func hasDots(path string) bool {
	for {
		s := "/" + strings.ReplaceAll(path, `\`, "/") + "/"
		if strings.Contains(s, "/./") || strings.Contains(s, "/../") {
			return true
		}
		decoded, err := url.PathUnescape(path)
		if err != nil || decoded == path {
			return false
		}
		path = decoded
	}
}
