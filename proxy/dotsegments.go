package proxy

import "strings"

// refuseDotSegments refuses a request target whose path has a "." or ".."
// segment, raw or percent-encoded in any case and at any depth ("%2e",
// ".%2E", "%252e"). Anything between khproxy and the API that normalises
// paths (RFC 3986 §5.2.4) would take such a request, signed, somewhere other
// than the path it was signed for, possibly outside the API's base path; the
// API has no such paths. Encoded slashes and backslashes count as
// separators, since some servers decode them before normalising.
func refuseDotSegments(target string) error {
	path, _, _ := strings.Cut(target, "?")
	if hasDotSegment(path) {
		return &Error{Kind: KindBadRequest, Detail: `request path has a "." or ".." segment (raw or percent-encoded): the API has no such paths`}
	}
	return nil
}

// hasDotSegment reports whether path, or any decoding of it, has a dot
// segment.
func hasDotSegment(path string) bool {
	for {
		for seg := range strings.FieldsFuncSeq(path, func(r rune) bool { return r == '/' || r == '\\' }) {
			if seg == "." || seg == ".." {
				return true
			}
		}
		decoded := decodeDotsAndSeparators(path)
		if decoded == path {
			return false
		}
		path = decoded
	}
}

// decodeDotsAndSeparators decodes, once, the escapes that can make a dot
// segment: %2E ("."), %2F ("/"), %5C ("\") and %25 ("%", which can make one
// of the others), in either case. Other escapes are left alone.
func decodeDotsAndSeparators(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			switch strings.ToUpper(s[i+1 : i+3]) {
			case "2E":
				b.WriteByte('.')
				i += 2
				continue
			case "2F":
				b.WriteByte('/')
				i += 2
				continue
			case "5C":
				b.WriteByte('\\')
				i += 2
				continue
			case "25":
				b.WriteByte('%')
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
