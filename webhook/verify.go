// Package webhook receives the KernelHost API's webhooks: it verifies their
// Stripe-scheme signature once, drops replays, and forwards each verified
// delivery to the app, so that no app has to verify signatures itself.
//
// Verify is pure code, like package signer: it knows nothing of HTTP. Receiver
// is the http.Handler that reads a delivery, verifies it and hands it to its
// Next handler, usually a Forwarder to the app. The package knows nothing of
// khproxy's configuration or of the emulator that tests use as the sender.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultHeader is the header that carries the signature when none is
// configured. The API's documentation does not name one (spec §3); this is the
// name khproxy's emulator sends. Stripe's own is "Stripe-Signature".
const DefaultHeader = "KH-Webhook-Signature"

// The reasons Verify rejects a signature header. Verify wraps them with
// details that never contain a signature; test them with errors.Is.
var (
	// ErrNoSignature: the header is empty or absent.
	ErrNoSignature = errors.New("no signature")
	// ErrMalformed: the header is not "t=<unix seconds>,v1=<hex>[,...]", or
	// it has no v1 signature at all (v0 and unknown schemes do not count).
	ErrMalformed = errors.New("malformed signature header")
	// ErrMismatch: no v1 signature matches the body and timestamp under the
	// secret (wrong secret, tampered body or timestamp, forged signature).
	ErrMismatch = errors.New("no matching signature")
	// ErrStale: a v1 signature matches, but its timestamp is older than the
	// tolerance (a replay, or a sender clock far behind).
	ErrStale = errors.New("timestamp too old")
	// ErrFuture: a v1 signature matches, but its timestamp is further ahead
	// than the tolerance (a sender clock far ahead).
	ErrFuture = errors.New("timestamp in the future")
)

// maxTimestampDigits bounds t: Unix seconds have 10 digits until the year
// 2286; anything longer is not a timestamp.
const maxTimestampDigits = 12

// parsed is one signature header: its timestamp and its v1 signatures, as
// sent (64 lowercase hex digits each to have any chance of matching).
type parsed struct {
	t  int64
	ts string // t exactly as sent; it is what the sender signed
	v1 []string
}

// parseHeader splits a header of comma-separated key=value elements, with
// optional spaces around each. It needs exactly one t (decimal digits) and at
// least one v1; other keys (v0, future schemes) are ignored. An element
// without "=" or with an empty key makes the header malformed.
func parseHeader(header string) (parsed, error) {
	var p parsed
	if strings.TrimSpace(header) == "" {
		return p, ErrNoSignature
	}
	seenT := false
	for elem := range strings.SplitSeq(header, ",") {
		key, val, ok := strings.Cut(strings.Trim(elem, " \t"), "=")
		switch {
		case !ok || key == "":
			return parsed{}, fmt.Errorf("%w: every element must be key=value", ErrMalformed)
		case key == "t":
			if seenT {
				return parsed{}, fmt.Errorf("%w: more than one t", ErrMalformed)
			}
			seenT = true
			if val == "" || len(val) > maxTimestampDigits || strings.Trim(val, "0123456789") != "" {
				return parsed{}, fmt.Errorf("%w: t must be Unix seconds", ErrMalformed)
			}
			p.t, _ = strconv.ParseInt(val, 10, 64) // at most 12 digits: cannot fail
			p.ts = val
		case key == "v1":
			p.v1 = append(p.v1, val)
		}
	}
	if !seenT {
		return parsed{}, fmt.Errorf("%w: no t", ErrMalformed)
	}
	if len(p.v1) == 0 {
		return parsed{}, fmt.Errorf("%w: no v1 signature (v0 and other schemes are not accepted)", ErrMalformed)
	}
	return p, nil
}

// expectedV1 returns the lowercase hex HMAC-SHA256 of "<ts>.<body>" under
// secret: the v1 signature of Stripe's scheme.
func expectedV1(secret []byte, ts string, body [][]byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	for _, p := range body {
		mac.Write(p)
	}
	sum := mac.Sum(nil)
	out := make([]byte, hex.EncodedLen(len(sum)))
	hex.Encode(out, sum)
	return out
}

// Verify checks a webhook signature header against the raw body bytes, as
// Stripe's scheme defines it: header "t=<unix seconds>,v1=<hex>[,v1=<hex>...]",
// signed payload "<t>.<body>", HMAC-SHA256 under secret in lowercase hex.
//
// Any one matching v1 is enough, so that a sender rotating its secret may sign
// with the old and the new one; v0 and unknown schemes are ignored and never
// enough. Signatures are compared in constant time. The signature is checked
// before the time, so ErrStale and ErrFuture are only returned for authentic
// deliveries; the timestamp must lie within tolerance of now in either
// direction, so tolerance should be positive (zero accepts a t only during
// its own second's first instant).
//
// It returns nil or an error wrapping ErrNoSignature, ErrMalformed,
// ErrMismatch, ErrStale or ErrFuture. It is safe for concurrent use.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	_, err := verify(secret, header, body, now, tolerance)
	return err
}

// verify is Verify returning the verified header's timestamp, exactly as it
// was sent.
func verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) (string, error) {
	p, err := parseHeader(header)
	if err != nil {
		return "", err
	}
	return p.check(secret, [][]byte{body}, now, tolerance)
}

// check verifies a parsed header against body, given in pieces; see Verify.
func (p parsed) check(secret []byte, body [][]byte, now time.Time, tolerance time.Duration) (string, error) {
	want := expectedV1(secret, p.ts, body)
	match := false
	for _, got := range p.v1 {
		// hmac.Equal is constant-time for equal lengths; a length
		// mismatch says nothing about the secret.
		if hmac.Equal([]byte(got), want) {
			match = true
		}
	}
	if !match {
		return "", ErrMismatch
	}
	if err := p.timely(now, tolerance); err != nil {
		return "", err
	}
	return p.ts, nil
}

// timely checks the header's timestamp against the tolerance alone, so
// that a delivery whose time is off is refused before its body is read. It
// returns nil or an error wrapping ErrStale or ErrFuture.
func (p parsed) timely(now time.Time, tolerance time.Duration) error {
	age := now.Sub(time.Unix(p.t, 0))
	switch {
	case age > tolerance:
		return fmt.Errorf("%w: signed %s ago, tolerance %s", ErrStale, age.Truncate(time.Second), tolerance)
	case -age > tolerance:
		return fmt.Errorf("%w: signed %s ahead, tolerance %s", ErrFuture, (-age).Truncate(time.Second), tolerance)
	}
	return nil
}
