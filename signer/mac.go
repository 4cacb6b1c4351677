package signer

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// macState is the scratch space of signatures made with one secret: an HMAC
// keyed with it, the string to sign, the digest and its hex form. Keying an
// HMAC and building the string cost more allocations than the rest of a
// request's signing, so states are pooled; a state keyed with a secret that
// has since rotated away is dropped when next taken (and, like every pooled
// object, freed by the garbage collector within two cycles).
type macState struct {
	key   []byte // copy of the secret mac is keyed with
	mac   hash.Hash
	msg   []byte
	sum   [sha256.Size]byte
	hex   [2 * sha256.Size]byte
	nonce [16]byte
}

var macStates sync.Pool

// maxPooledMsg bounds the string-to-sign buffer kept in the pool; a request
// with a longer path and query gets a buffer of its own.
const maxPooledMsg = 8 << 10

// getMAC returns a state whose mac is keyed with secret and reset.
func getMAC(secret []byte) *macState {
	if st, ok := macStates.Get().(*macState); ok && hmac.Equal(st.key, secret) {
		st.mac.Reset()
		return st
	}
	return &macState{key: bytes.Clone(secret), mac: hmac.New(sha256.New, secret)}
}

func putMAC(st *macState) {
	if cap(st.msg) > maxPooledMsg {
		st.msg = nil
	}
	macStates.Put(st)
}

// signature returns the lowercase hex HMAC of the string to sign.
func (st *macState) signature(method, path, timestamp, nonce, bodyHash string) string {
	m := append(st.msg[:0], method...)
	m = append(m, '\n')
	m = append(m, path...)
	m = append(m, '\n')
	m = append(m, timestamp...)
	m = append(m, '\n')
	m = append(m, nonce...)
	m = append(m, '\n')
	m = append(m, bodyHash...)
	st.msg = m
	st.mac.Write(m)
	return string(hex.AppendEncode(st.hex[:0], st.mac.Sum(st.sum[:0])))
}
