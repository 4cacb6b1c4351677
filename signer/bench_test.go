package signer_test

import (
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/signer"
)

// benchSizes are the body sizes every signing benchmark runs at.
var benchSizes = []int{0, 1 << 10, 64 << 10, 1 << 20}

// stampCounter writes n as 16 hex digits at the start of body (when it is
// that long), so that no two iterations hash the same bytes.
func stampCounter(body []byte, n uint64) {
	if len(body) >= 16 {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], n)
		hex.Encode(body[:16], b[:])
	}
}

// BenchmarkSign measures what the proxy does per request to sign it: the body
// hash and the four headers (nonce from crypto/rand, HMAC), at each body size.
// Every iteration's body differs. Run:
//
//	go test ./signer -run '^$' -bench Sign -benchmem
func BenchmarkSign(b *testing.B) {
	s := &signer.Signer{Key: "kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", Secret: signer.StaticSecret(vecSecret)}
	now := time.Unix(1700000000, 0)
	for _, size := range benchSizes {
		b.Run(testutil.SizeName(size), func(b *testing.B) {
			body := make([]byte, size)
			for i := range body {
				body[i] = 'x'
			}
			b.SetBytes(int64(size))
			var n uint64
			for b.Loop() {
				n++
				stampCounter(body, n)
				h, err := s.Sign("POST", "/v1/orders", signer.BodyHash(body), now)
				if err != nil {
					b.Fatal(err)
				}
				if h.Signature == "" {
					b.Fatal("empty signature")
				}
			}
		})
	}
}

// BenchmarkBodyHash isolates the SHA-256 of the body, the part of signing
// that grows with the body and cannot be avoided.
func BenchmarkBodyHash(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(testutil.SizeName(size), func(b *testing.B) {
			body := make([]byte, size)
			b.SetBytes(int64(size))
			var n uint64
			for b.Loop() {
				n++
				stampCounter(body, n)
				if signer.BodyHash(body) == "" {
					b.Fatal("empty hash")
				}
			}
		})
	}
}
