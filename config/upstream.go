package config

import (
	"fmt"
	"net/url"
	"strings"
)

// DocumentedUpstream is the API's documented base URL (spec §0) without the
// /v1 that every endpoint path starts with; it is KH_UPSTREAM's default.
const DocumentedUpstream = "https://www.kernelhost.com" + DocumentedBasePath

// DocumentedBasePath is the path of DocumentedUpstream.
const DocumentedBasePath = "/cp/kh_reseller_api"

// validateUpstreamPath judges the path of KH_UPSTREAM. Clients send /v1/...
// and khproxy appends it to KH_UPSTREAM, so a value that already ends in /v1
// (as the API's documented base URL does) would send every call to
// .../v1/v1/..., which the API answers with 401 signature_mismatch: it is
// refused, naming the value to use. Another path than the documented base
// starts with a warning.
func (c *Config) validateUpstreamPath(v *validation) {
	u := c.Upstream
	if u == nil || u.Host == "" {
		return // validateNetwork says what is wrong
	}
	path := strings.TrimSuffix(u.Path, "/")
	if before, ok := strings.CutSuffix(path, "/v1"); ok {
		v.fail("KH_UPSTREAM", "%s ends in /v1, but khproxy appends the client's /v1/... path itself, so every call would go to .../v1/v1/... and fail (401 signature_mismatch); set KH_UPSTREAM=%s",
			u.Redacted(), withPath(u, before))
		return
	}
	switch {
	case path == DocumentedBasePath:
	case strings.Contains(path+"/", "/v1/"):
		before, _, _ := strings.Cut(path+"/", "/v1/")
		v.warn("KH_UPSTREAM", fmt.Sprintf("the path %q holds /v1/, which khproxy appends itself from the client's path; you probably mean %s", u.Path, withPath(u, before)))
	case strings.EqualFold(u.Hostname(), "www.kernelhost.com"):
		v.warn("KH_UPSTREAM", fmt.Sprintf("the API's base path is %s, not %q: calls will answer 404; use %s", DocumentedBasePath, u.Path, DocumentedUpstream))
	default:
		v.warn("KH_UPSTREAM", fmt.Sprintf("the path %q is not the API's documented base path %s: fine for an emulator or gateway that serves the API there, otherwise calls will answer 404", u.Path, DocumentedBasePath))
	}
}

// withPath returns u with another path, for a suggestion.
func withPath(u *url.URL, path string) string {
	c := *u
	c.Path, c.RawPath = path, ""
	return c.Redacted()
}

// SignedPath is KH_SIGNED_PATH: which form of the request path khproxy signs
// (spec §1.2 and §9.1: the prose says "the full request path", every example
// signs /v1/...). It is SignedPathV1 or SignedPathFull.
type SignedPath string

// The values of KH_SIGNED_PATH.
const (
	// SignedPathV1 signs the path from /v1 on, as every example of the
	// API's docs does: /v1/orders.
	SignedPathV1 SignedPath = "v1"
	// SignedPathFull signs the upstream request's whole path, KH_UPSTREAM's
	// path followed by /v1/...: /cp/kh_reseller_api/v1/orders.
	SignedPathFull SignedPath = "full"
)

// validateSignedPath judges KH_SIGNED_PATH.
func (c *Config) validateSignedPath(v *validation) {
	switch c.SignedPath {
	case SignedPathV1, SignedPathFull:
	default:
		v.fail("KH_SIGNED_PATH", "must be v1 (sign /v1/..., as the docs' examples do) or full (sign KH_UPSTREAM's path plus /v1/...), got %q", string(c.SignedPath))
	}
}
