package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"

	"khproxy/apiroute"
)

// clientKeyPattern is the form of an Idempotency-Key the API accepts (spec
// §2). A client's key outside it is refused before anything is read or sent:
// the API would refuse it too, and it is echoed in the response header.
var clientKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,80}$`)

// checkClientKey refuses a client Idempotency-Key (the first, which is the
// one used) that does not match clientKeyPattern, an empty one included.
func checkClientKey(h http.Header) error {
	keys, ok := h["Idempotency-Key"]
	if ok && (len(keys) == 0 || !clientKeyPattern.MatchString(keys[0])) {
		return &Error{Kind: KindBadRequest, Detail: "the Idempotency-Key header must match " + clientKeyPattern.String() + " (spec §2)"}
	}
	return nil
}

// pickKey keeps the client's Idempotency-Key, or makes one for a request on
// an idempotent route.
func (p *Proxy) pickKey(r *http.Request, ex *exchange) error {
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		ex.idemKey, ex.keySource = key, KeyClient
		return nil
	}
	if _, ok := apiroute.MatchAny(p.routes, r.Method, ex.target); !ok {
		return nil
	}
	key, err := newIdempotencyKey()
	if err != nil {
		return &Error{Kind: KindSigning, Detail: "could not generate an Idempotency-Key", Err: err}
	}
	ex.idemKey, ex.autoKey, ex.keySource = key, true, KeyAuto
	r.Header.Set("Idempotency-Key", key)
	return nil
}

func newIdempotencyKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
