package reqtarget

import (
	"strings"

	"khproxy/apiroute"
)

// A path with a "." or ".." segment, raw or percent-encoded in any case and
// at any depth ("%2e", ".%2E", "%252e", "%25%32%65"), is refused. Anything
// between khproxy and the API that normalises paths (RFC 3986 §5.2.4) would
// take such a request, signed, somewhere other than the path it was signed
// for, possibly outside the API's base path; the API has no such paths.
// Encoded slashes and backslashes count as separators, since some servers
// decode them before normalising.

// hasDotSegment reports whether path, or any decoding of it, has a dot
// segment.
func hasDotSegment(path string) bool {
	for {
		for seg := range strings.FieldsFuncSeq(path, func(r rune) bool { return r == '/' || r == '\\' }) {
			if seg == "." || seg == ".." {
				return true
			}
		}
		decoded := apiroute.Unescape(path, nil)
		if decoded == path {
			return false
		}
		path = decoded
	}
}
