package reqtarget

import "strings"

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
		decoded := unescapeOnce(path)
		if decoded == path {
			return false
		}
		path = decoded
	}
}

// unescapeOnce decodes every valid %XX escape of s, once; a "%" that starts
// no valid escape stays as it is.
func unescapeOnce(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
