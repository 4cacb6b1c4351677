package apiroute

import "strings"

// Resembles reports whether path, which Of does not name, would be an API
// route to a server that reads paths more loosely than RFC 3986 allows, and
// returns that route's template. The loose reading is the union of what
// common servers and frameworks do: percent-escapes decoded, at any depth,
// "%2F" and "\" included; letters compared without regard to case; ";"
// parameters dropped from each segment (as servlet containers do), and
// whatever follows a NUL byte (as C strings end); white space around a
// segment dropped; empty segments ("//", a trailing "/")
// dropped; and any non-empty segment taken as an {id}.
//
// khproxy refuses such a path rather than send it: signed, without the
// Idempotency-Key its route would get, to an API that might read it as that
// route. For a path Of names, Resembles returns ("", false). It is safe for
// concurrent use.
func Resembles(path string) (string, bool) {
	path, _, _ = strings.Cut(path, "?")
	if Of(path) != Other {
		return "", false
	}
	loose := looseSegments(path)
	if loose == "" {
		return "", false
	}
	anyID := func(s string) bool { return s != "" }
	for i, t := range split {
		if matchPath(t, loose, anyID) {
			return templates[i], true
		}
	}
	return "", false
}

// maxDecodes bounds how many layers of percent-encoding the loose reading
// peels off; no server decodes more than twice.
const maxDecodes = 4

// looseSegments returns path read loosely (see Resembles) and joined again
// with "/", starting with "/"; "" when it has more segments than any
// template.
func looseSegments(path string) string {
	for range maxDecodes {
		decoded := unescapeAll(path)
		if decoded == path {
			break
		}
		path = decoded
	}
	path = strings.ToLower(strings.ReplaceAll(path, `\`, "/"))
	var b strings.Builder
	n := 0
	for seg := range strings.SplitSeq(path, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		seg, _, _ = strings.Cut(seg, "\x00")
		seg = strings.TrimSpace(seg)
		if seg == "" {
			continue
		}
		if n++; n >= maxSegments {
			return ""
		}
		b.WriteByte('/')
		b.WriteString(seg)
	}
	return b.String()
}

// unescapeAll decodes every valid %XX escape of s once; a "%" that starts
// no valid escape stays as it is.
func unescapeAll(s string) string {
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
