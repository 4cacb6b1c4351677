package heldbody

import (
	"math/bits"
	"sync"
)

// Request bodies are read into buffers taken from pools by size class and
// given back once no upstream attempt can read them any more. Reuse spares
// the allocator the zeroing of every body and the garbage collector a heap
// that grows to twice the bodies held before it runs: both cost more than
// the SHA-256 of the body.
//
// Classes step by a quarter of a power of two (512, 640, 768, 896, 1024,
// 1280, …), so that a buffer is at most 25% larger than its body.
const (
	minPooled = 512      // smallest class; smaller bodies get a buffer this size
	maxPooled = 16 << 20 // bodies above it get a buffer of their own, not pooled
	minShift  = 9        // log2(minPooled)
)

var bodyPools [4*(24-minShift) + 1]sync.Pool // classes 0 (512) to 60 (16 MiB)

// pooledBuf is a body buffer that came from bodyPools. Its bytes beyond
// what was read into it are whatever the last user left there.
type pooledBuf struct {
	b     []byte
	class int
}

// bodyClass returns the pool class for a buffer of n bytes and the class's
// capacity, or class -1 when n is too large to pool.
func bodyClass(n int) (class, size int) {
	if n <= minPooled {
		return 0, minPooled
	}
	if n > maxPooled {
		return -1, n
	}
	k := bits.Len(uint(n-1)) - 1 // 2^k < n <= 2^(k+1)
	step := 1 << (k - 2)
	q := (n - 1<<k + step - 1) / step // 1..4 quarters above 2^k
	return 4*(k-minShift) + q, 1<<k + q*step
}

// getBuf returns a buffer with room for n bytes, length n.
func getBuf(n int) *pooledBuf {
	class, size := bodyClass(n)
	if class >= 0 {
		if pb, ok := bodyPools[class].Get().(*pooledBuf); ok {
			pb.b = pb.b[:n]
			return pb
		}
	}
	return &pooledBuf{b: make([]byte, n, size), class: class}
}

// putBuf gives pb back to its pool; nobody may use it after.
func putBuf(pb *pooledBuf) {
	if pb.class >= 0 {
		bodyPools[pb.class].Put(pb)
	}
}
