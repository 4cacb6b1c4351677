package apiroute

import "strings"

// Unescape decodes, once, each valid %XX escape of s (hex digits in either
// case) whose byte decode accepts; nil decode accepts every byte. Every
// other byte stays as it is: a "%" that starts no valid escape, and the
// escapes decode refuses. Unlike url.PathUnescape it never fails. It is
// khproxy's one percent-decoder of paths: Resembles and package
// proxy/reqtarget's dot-segment check apply it with nil (the lenient
// reading a loose server might make, "%2F" included) until nothing
// changes, and reqtarget normalises a path with it, decoding unreserved
// characters only. It is safe for concurrent use.
func Unescape(s string, decode func(c byte) bool) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			if c := unhex(s[i+1])<<4 | unhex(s[i+2]); decode == nil || decode(c) {
				b.WriteByte(c)
				i += 2
				continue
			}
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
