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
		decoded := Unescape(path, nil)
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
