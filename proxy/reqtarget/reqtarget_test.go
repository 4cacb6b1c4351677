package reqtarget_test

import (
	"errors"
	"net/url"
	"testing"

	"khproxy/proxy/reqtarget"
)

const (
	basePath = "/cp/kh_reseller_api"
	upHost   = "127.0.0.1:8080"
)

// resolveCase is one request-target and what Resolve makes of it: the path
// after the base (wantPath; "" means the target itself) and the upstream's
// request-target (wantURI; "" means the base path followed by wantPath), or
// the error.
type resolveCase struct {
	name, target      string
	wantPath, wantURI string
	wantErr           error
}

// resolveCases are every request-target the proxy's tests send through
// khproxy (proxy_test.go, basepath_test.go, hostile_test.go), and more.
var resolveCases = []resolveCase{
	// Sent as is, and signed as sent (TestSignsExactlyWhatIsSent).
	{name: "plain", target: "/v1/products"},
	{name: "query encodings", target: "/v1/products?q=a%20b&x=1%2F2&y=c+d&z=%3D"},
	{name: "repeated unsorted params", target: "/v1/services?sort=z&page=2&sort=a&page=1"},
	{name: "lowercase escapes kept", target: "/v1/products?q=%c3%a9"},
	{name: "empty query kept", target: "/v1/products?"},
	{name: "semicolon in query kept", target: "/v1/products?a=1;b=2"},
	{name: "percent-encoded path", target: "/v1/caf%C3%A9/a%2Fb"},
	{name: "raw UTF-8 path is percent-encoded", target: "/v1/café/世界?q=é", wantPath: "/v1/caf%C3%A9/%E4%B8%96%E7%95%8C?q=é"},
	{name: "other escapes kept beside a raw byte", target: "/v1/a%2Fb/ü|x%7c", wantPath: "/v1/a%2Fb/%C3%BC%7Cx%7c"},
	{name: "sub-delims and brackets", target: "/v1/a;b=c,d@e:f!$&'()*+[x]", wantPath: "/v1/a;b=c,d@e:f!$&'()*+%5Bx%5D"},
	{name: "control bytes and space", target: "/v1/a b\x7f\x00", wantPath: "/v1/a%20b%7F%00"},
	{name: "a fragment is no part of a path", target: "/v1/a#b", wantPath: "/v1/a%23b"},

	// Absolute form (TestTargetIsAlwaysTheUpstream) and the API's own URLs
	// (TestAPIURLsAreTheSameRequest).
	{name: "absolute-form", target: "http://evil.example/v1/products?page=2", wantPath: "/v1/products?page=2"},
	{name: "absolute-form no path", target: "http://evil.example", wantPath: "/"},
	{name: "absolute-form query without a path", target: "http://evil.example?x=1", wantPath: "/?x=1"},
	{name: "origin form with the base", target: basePath + "/v1/products?page=2", wantPath: "/v1/products?page=2"},
	{name: "absolute form, the upstream's host", target: "http://" + upHost + basePath + "/v1/orders/1006", wantPath: "/v1/orders/1006"},
	{name: "absolute form, the documented host", target: "https://www.kernelhost.com" + basePath + "/v1/me", wantPath: "/v1/me"},
	{name: "absolute form, another host", target: "http://evil.example" + basePath + "/v1/me", wantPath: "/v1/me"},
	{name: "the base alone", target: basePath, wantPath: "/"},
	{name: "the base and a query", target: basePath + "?x=1", wantPath: "/?x=1"},
	{name: "the base twice is stripped once", target: basePath + basePath + "/v1/x", wantPath: basePath + "/v1/x"},
	{name: "a longer first segment is not the base", target: basePath + "x/v1/products"},
	{name: "escapes kept", target: basePath + "/v1/a%2Fb?q=a+b%20c", wantPath: "/v1/a%2Fb?q=a+b%20c"},
	{name: "the base in another escaping is not the base", target: "/cp/kh%5Freseller_api/v1/x", wantPath: "/cp/kh_reseller_api/v1/x"},

	// Percent-encoded unreserved characters are decoded (RFC 3986
	// §6.2.2.2): signed, labelled and keyed as the path they stand for.
	{name: "encoded letter", target: "/v1/%6Frders", wantPath: "/v1/orders"},
	{name: "encoded letter, lower-case hex", target: "/v1/services/1/%61ctions", wantPath: "/v1/services/1/actions"},
	{name: "encoded id", target: "/v1/services/%31%32/actions", wantPath: "/v1/services/12/actions"},
	{name: "every unreserved kind", target: "/v1/%41%7a%30%2D%2e%5F%7E", wantPath: "/v1/Az0-._~"},
	{name: "encoded unreserved after the base", target: basePath + "/v1/%6Frders?q=%6F", wantPath: "/v1/orders?q=%6F"},
	{name: "the query is not decoded", target: "/v1/products?%6F=%41", wantPath: "/v1/products?%6F=%41"},
	{name: "reserved and other escapes kept", target: "/v1/a%2Fb%20c%25d%3B%c3%a9", wantPath: "/v1/a%2Fb%20c%25d%3B%c3%a9"},
	{name: "an encoded percent is not decoded twice", target: "/v1/%256Frders", wantPath: "/v1/%256Frders"},

	// Empty segments: servers differ on them (TestAmbiguousPathsRefused).
	{name: "double slash", target: "/v1//orders", wantErr: reqtarget.ErrEmptySegment},
	{name: "trailing slash", target: "/v1/orders/", wantErr: reqtarget.ErrEmptySegment},
	{name: "trailing slash, query", target: "/v1/orders/?x=1", wantErr: reqtarget.ErrEmptySegment},
	{name: "trailing double slash", target: "/v1/orders//", wantErr: reqtarget.ErrEmptySegment},
	{name: "double slash after the base", target: basePath + "/v1//orders", wantPath: "/v1//orders", wantErr: reqtarget.ErrEmptySegment},
	{name: "double slash in absolute form", target: "http://localhost/v1//orders", wantPath: "/v1//orders", wantErr: reqtarget.ErrEmptySegment},
	{name: "encoded double slash", target: "/v1/%2F/orders"},
	{name: "slash in the query", target: "/v1/orders?next=//x/"},

	// Not a path, or not one khproxy can sign (TestRefusedRequests,
	// FuzzRequestTarget's seeds).
	{name: "asterisk", target: "*", wantErr: reqtarget.ErrNotAPath},
	{name: "empty", target: "", wantErr: reqtarget.ErrNotAPath},
	{name: "authority form", target: "api.example.com:443", wantErr: reqtarget.ErrNotAPath},
	{name: "network path", target: "//evil/x", wantErr: reqtarget.ErrNetworkPath},
	{name: "network path after the base", target: basePath + "//evil/x", wantPath: "//evil/x", wantErr: reqtarget.ErrNetworkPath},
	{name: "network path in absolute form", target: "http://evil.example//x", wantPath: "//x", wantErr: reqtarget.ErrNetworkPath},
	{name: "lone percent", target: "/%", wantErr: reqtarget.ErrBadEscape},
	{name: "invalid escape", target: "/v1/%zz", wantErr: reqtarget.ErrBadEscape},
	{name: "short escape", target: "/v1/%2", wantErr: reqtarget.ErrBadEscape},
	{name: "invalid escape after the base", target: basePath + "/v1/%zz?q", wantPath: "/v1/%zz?q", wantErr: reqtarget.ErrBadEscape},

	// Dot segments, raw or encoded at any depth (TestDotSegmentsRefused,
	// FuzzRequestTarget's seeds).
	{name: "dot-dot", target: "/v1/../admin", wantErr: reqtarget.ErrDotSegment},
	{name: "dot-dot thrice", target: "/v1/../../../admin", wantErr: reqtarget.ErrDotSegment},
	{name: "dot", target: "/v1/./products", wantErr: reqtarget.ErrDotSegment},
	{name: "dot-dot last", target: "/v1/..", wantErr: reqtarget.ErrDotSegment},
	{name: "dot last", target: "/v1/.", wantErr: reqtarget.ErrDotSegment},
	{name: "dot-dot alone", target: "/..", wantErr: reqtarget.ErrDotSegment},
	{name: "dot-dot after an id", target: "/v1/products/42/..", wantErr: reqtarget.ErrDotSegment},
	{name: "dot-dot of a POST", target: "/v1/orders/..", wantErr: reqtarget.ErrDotSegment},
	{name: "encoded", target: "/v1/%2e%2e/admin", wantPath: "/v1/../admin", wantErr: reqtarget.ErrDotSegment},
	{name: "encoded upper case", target: "/v1/%2E%2E/admin", wantPath: "/v1/../admin", wantErr: reqtarget.ErrDotSegment},
	{name: "encoded mixed case", target: "/v1/%2e%2E/admin", wantPath: "/v1/../admin", wantErr: reqtarget.ErrDotSegment},
	{name: "half encoded", target: "/v1/.%2e/admin", wantPath: "/v1/../admin", wantErr: reqtarget.ErrDotSegment},
	{name: "other half encoded", target: "/v1/%2E./admin", wantPath: "/v1/../admin", wantErr: reqtarget.ErrDotSegment},
	{name: "encoded dot", target: "/v1/%2e/products", wantPath: "/v1/./products", wantErr: reqtarget.ErrDotSegment},
	{name: "encoded twice", target: "/v1/%252e%252e/admin", wantErr: reqtarget.ErrDotSegment},
	{name: "encoded thrice", target: "/v1/%25252E./admin", wantErr: reqtarget.ErrDotSegment},
	{name: "every byte encoded, twice", target: "/v1/%25%32%65%25%32%65/x", wantPath: "/v1/%252e%252e/x", wantErr: reqtarget.ErrDotSegment},
	{name: "encoded slash", target: "/v1/..%2fadmin", wantErr: reqtarget.ErrDotSegment},
	{name: "encoded slash upper case", target: "/v1/..%2Fadmin", wantErr: reqtarget.ErrDotSegment},
	{name: "encoded slashes", target: "/v1/x%2f..%2f..%2fadmin", wantErr: reqtarget.ErrDotSegment},
	{name: "encoded backslash", target: "/v1/..%5cadmin", wantErr: reqtarget.ErrDotSegment},
	{name: "backslash", target: `/v1/..\admin`, wantPath: "/v1/..%5Cadmin", wantErr: reqtarget.ErrDotSegment},
	{name: "backslashes", target: `/v1/x\..\..\admin`, wantPath: "/v1/x%5C..%5C..%5Cadmin", wantErr: reqtarget.ErrDotSegment},
	{name: "dot-dot with a query", target: "/v1/../admin?q=1", wantErr: reqtarget.ErrDotSegment},
	{name: "dot-dot in absolute form", target: "http://evil.example/v1/../admin", wantPath: "/v1/../admin", wantErr: reqtarget.ErrDotSegment},
	{name: "dot-dot beside raw UTF-8", target: "/v1/caf\xc3\xa9/..", wantPath: "/v1/caf%C3%A9/..", wantErr: reqtarget.ErrDotSegment},
	{name: "dot-dot after the base", target: basePath + "/../x", wantPath: "/../x", wantErr: reqtarget.ErrDotSegment},

	// Dots that are not whole segments, and dots in the query, are fine.
	{name: "dot inside a segment", target: "/v1/a.b"},
	{name: "three dots", target: "/v1/..."},
	{name: "leading dot", target: "/v1/.x"},
	{name: "trailing dot", target: "/v1/x."},
	{name: "three encoded dots", target: "/v1/%2e%2e%2e", wantPath: "/v1/..."},
	{name: "encoded trailing dot", target: "/v1/x%2e", wantPath: "/v1/x."},
	{name: "dots in the query", target: "/v1/products?path=../x&d=."},
	{name: "dots in the query, absolute form", target: "http://evil/v1/a.b?x=../y", wantPath: "/v1/a.b?x=../y"},
}

func TestResolve(t *testing.T) {
	upstream := mustParse(t, "http://"+upHost+basePath)
	base := reqtarget.NewBase(upstream)
	for _, tt := range resolveCases {
		t.Run(tt.name, func(t *testing.T) {
			wantPath := tt.wantPath
			if wantPath == "" && tt.wantErr != reqtarget.ErrNotAPath {
				wantPath = tt.target
			}
			got, err := base.Resolve(tt.target)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Resolve(%q) error = %v, want %v", tt.target, err, tt.wantErr)
			}
			if got.Path != wantPath {
				t.Errorf("Resolve(%q).Path = %q, want %q", tt.target, got.Path, wantPath)
			}
			if err != nil {
				if got.URL != nil {
					t.Errorf("Resolve(%q) failed but gave the URL %v", tt.target, got.URL)
				}
				return
			}
			checkURL(t, got.URL, upstream, basePath+wantPath)
		})
	}
}

// checkURL checks that u goes to upstream's scheme and host with the
// request-target wantURI, and that its decoded Path matches its RawPath.
func checkURL(t testing.TB, u, upstream *url.URL, wantURI string) {
	t.Helper()
	if u == nil {
		t.Fatal("URL is nil")
	}
	if u.Scheme != upstream.Scheme || u.Host != upstream.Host {
		t.Errorf("URL goes to %s://%s, want the upstream %s://%s", u.Scheme, u.Host, upstream.Scheme, upstream.Host)
	}
	if got := u.RequestURI(); got != wantURI {
		t.Errorf("URL.RequestURI() = %q, want %q", got, wantURI)
	}
	if u.EscapedPath() != u.RawPath {
		t.Errorf("URL.RawPath %q is not an encoding of URL.Path %q (EscapedPath %q)", u.RawPath, u.Path, u.EscapedPath())
	}
}

func TestResolveBases(t *testing.T) {
	tests := []struct {
		name, upstream, target string
		wantPath, wantURI      string
		wantDecoded            string // the URL's Path
	}{
		{"an escaped base path", "http://up/cp/kh%5Freseller_api", "/v1/ü?x=1", "/v1/%C3%BC?x=1", "/cp/kh%5Freseller_api/v1/%C3%BC?x=1", "/cp/kh_reseller_api/v1/ü"},
		{"an escaped base path, repeated", "http://up/cp/kh%5Freseller_api", "/cp/kh%5Freseller_api/v1/x", "/v1/x", "/cp/kh%5Freseller_api/v1/x", "/cp/kh_reseller_api/v1/x"},
		{"an escaped base path, and unreserved escapes after it", "http://up/cp/kh%5Freseller_api", "/v1/%6Frders", "/v1/orders", "/cp/kh%5Freseller_api/v1/orders", "/cp/kh_reseller_api/v1/orders"},
		{"the escaped base path in another escaping", "http://up/cp/kh%5Freseller_api", "/cp/kh_reseller_api/v1/x", "/cp/kh_reseller_api/v1/x", "/cp/kh%5Freseller_api/cp/kh_reseller_api/v1/x", "/cp/kh_reseller_api/cp/kh_reseller_api/v1/x"},
		{"a trailing slash is not the base path's", "https://up/cp/kh_reseller_api/", basePath + "/v1/x", "/v1/x", basePath + "/v1/x", basePath + "/v1/x"},
		{"no base path", "https://up", "/v1/x%2Fy", "/v1/x%2Fy", "/v1/x%2Fy", "/v1/x/y"},
		{"no base path, a slash alone", "https://up/", "/v1/x", "/v1/x", "/v1/x", "/v1/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := mustParse(t, tt.upstream)
			got, err := reqtarget.NewBase(upstream).Resolve(tt.target)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.target, err)
			}
			if got.Path != tt.wantPath {
				t.Errorf("Path = %q, want %q", got.Path, tt.wantPath)
			}
			checkURL(t, got.URL, upstream, tt.wantURI)
			if got.URL.Path != tt.wantDecoded {
				t.Errorf("URL.Path = %q, want %q", got.URL.Path, tt.wantDecoded)
			}
		})
	}
}

// TestResolveZeroBase checks the zero Base: no base path to strip, and URLs
// with a path and query only.
func TestResolveZeroBase(t *testing.T) {
	var base reqtarget.Base
	got, err := base.Resolve(basePath + "/v1/x?q")
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != basePath+"/v1/x?q" || got.URL.String() != basePath+"/v1/x?q" {
		t.Errorf("Resolve = %q, URL %q; want both %q", got.Path, got.URL, basePath+"/v1/x?q")
	}
	if _, err := base.Resolve("/v1/../x"); !errors.Is(err, reqtarget.ErrDotSegment) {
		t.Errorf("the zero Base let a dot segment through: %v", err)
	}
}

// TestResolveNewURL checks that each Target's URL is its own: changing one
// changes no other.
func TestResolveNewURL(t *testing.T) {
	base := reqtarget.NewBase(mustParse(t, "http://"+upHost+basePath))
	a, _ := base.Resolve("/v1/x")
	b, _ := base.Resolve("/v1/x")
	a.URL.Host = "changed"
	if b.URL.Host != upHost {
		t.Errorf("changing one URL changed another: host %q", b.URL.Host)
	}
}

func mustParse(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
