// Package signer computes the KernelHost Reseller API request signature
// (spec §1): four KH-* headers over method, path with query, timestamp, nonce
// and the SHA-256 of the body.
//
// It is pure code: it knows nothing of servers or transports. The HTTP layer
// gives it the exact bytes it will put on the wire and copies the resulting
// headers onto the outgoing request.
package signer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"
)

// Header names set by Headers.Apply, as the API spells them.
const (
	HeaderKey       = "KH-Key"
	HeaderTimestamp = "KH-Timestamp"
	HeaderNonce     = "KH-Nonce"
	HeaderSignature = "KH-Signature"
)

// EmptyBodyHash is the lowercase hex SHA-256 of the empty string, the body
// hash of every request without a body.
const EmptyBodyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// BodyHash returns the lowercase hex SHA-256 of body, as the signing string
// wants it. A nil or empty body gives EmptyBodyHash.
func BodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:])
}

// BodyHasher computes BodyHash of a body written to it in pieces, so that a
// body can be hashed as it is read. The zero value is ready to use; Reset
// makes it ready for another body. It is not safe for concurrent use.
type BodyHasher struct {
	d hash.Hash
}

// Write adds p to the body. It never fails.
func (h *BodyHasher) Write(p []byte) (int, error) {
	if h.d == nil {
		h.d = sha256.New()
	}
	return h.d.Write(p)
}

// Sum returns BodyHash of everything written since the last Reset.
func (h *BodyHasher) Sum() string {
	if h.d == nil {
		return EmptyBodyHash
	}
	var sum [sha256.Size]byte
	var x [2 * sha256.Size]byte
	hex.Encode(x[:], h.d.Sum(sum[:0]))
	return string(x[:])
}

// Reset forgets what was written.
func (h *BodyHasher) Reset() {
	if h.d != nil {
		h.d.Reset()
	}
}

// BodyHashParts returns the BodyHash of the parts' concatenation, for a
// body held in pieces.
func BodyHashParts(parts [][]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// StringToSign returns the five parts joined by single LF bytes, with no
// trailing newline: METHOD, PATH (with query), TIMESTAMP, NONCE, BODYHASH.
func StringToSign(method, path, timestamp, nonce, bodyHash string) string {
	return method + "\n" + path + "\n" + timestamp + "\n" + nonce + "\n" + bodyHash
}

// Signature returns lowercase hex HMAC-SHA256(secret, StringToSign(...)).
// The secret is used as its raw bytes, not hex- or base64-decoded (spec §1.2).
func Signature(secret []byte, method, path, timestamp, nonce, bodyHash string) string {
	st := getMAC(secret)
	defer putMAC(st)
	return st.signature(method, path, timestamp, nonce, bodyHash)
}

// NewNonce reads 16 bytes from r and returns them as 32 lowercase hex
// characters, the form the official examples use (`openssl rand -hex 16`).
func NewNonce(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("signer: read nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Timestamp formats t as Unix seconds, the KH-Timestamp form.
func Timestamp(t time.Time) string {
	return strconv.FormatInt(t.Unix(), 10)
}

// SecretSource yields the current API secret. It is asked once per signature,
// so an implementation may return a new secret after a rotation. It must be
// safe for concurrent use and must not return an empty secret without an error.
type SecretSource interface {
	Secret() ([]byte, error)
}

// StaticSecret is a SecretSource that never changes.
type StaticSecret []byte

// Secret returns s. It fails when s is empty.
func (s StaticSecret) Secret() ([]byte, error) {
	if len(s) == 0 {
		return nil, errors.New("signer: empty secret")
	}
	return s, nil
}

// Headers are the four authentication headers of one request.
type Headers struct {
	Key       string
	Timestamp string
	Nonce     string
	Signature string
}

// Apply sets the four headers on h (an http.Header), replacing any value
// already there under any spelling of the name, so that h carries exactly one
// of each, spelled as the API documents them.
func (hs Headers) Apply(h map[string][]string) {
	for k := range h {
		for _, name := range [...]string{HeaderKey, HeaderTimestamp, HeaderNonce, HeaderSignature} {
			if strings.EqualFold(k, name) {
				delete(h, k)
			}
		}
	}
	// One array for the four values: a request's headers are set once.
	v := &[4]string{hs.Key, hs.Timestamp, hs.Nonce, hs.Signature}
	h[HeaderKey] = v[0:1:1]
	h[HeaderTimestamp] = v[1:2:2]
	h[HeaderNonce] = v[2:3:3]
	h[HeaderSignature] = v[3:4:4]
}

// Signer signs requests for one API key. Its fields must be set before first
// use and not changed after; from then on a Signer is safe for concurrent use.
// The zero value is not usable: Key and Secret are required.
type Signer struct {
	// Key is the public key id sent as KH-Key.
	Key string
	// Secret supplies the HMAC key for each signature.
	Secret SecretSource
	// Rand is the source of nonces; nil means crypto/rand.
	Rand io.Reader
}

// Sign returns the headers for one request: method as sent (uppercase), path
// as the exact request-target relative to the API base (with "?" and the raw
// query when there is one), bodyHash from BodyHash of the exact body bytes, and
// the time to put in KH-Timestamp. Every call draws a fresh nonce, so a retry
// must call Sign again.
func (s *Signer) Sign(method, path, bodyHash string, t time.Time) (Headers, error) {
	if s.Secret == nil {
		return Headers{}, errors.New("signer: no secret source")
	}
	secret, err := s.Secret.Secret()
	if err != nil {
		return Headers{}, fmt.Errorf("signer: secret: %w", err)
	}
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	st := getMAC(secret)
	defer putMAC(st)
	if _, err := io.ReadFull(r, st.nonce[:]); err != nil {
		return Headers{}, fmt.Errorf("signer: read nonce: %w", err)
	}
	nonce := string(hex.AppendEncode(st.hex[:0], st.nonce[:]))
	ts := Timestamp(t)
	return Headers{
		Key:       s.Key,
		Timestamp: ts,
		Nonce:     nonce,
		Signature: st.signature(method, path, ts, nonce, bodyHash),
	}, nil
}
