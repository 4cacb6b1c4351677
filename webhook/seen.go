package webhook

import (
	"context"
	"crypto/sha256"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// payloadKey identifies a delivery by its signed payload "<t>.<body>". Any
// valid signature of the header covers exactly this, so keying on it rather
// than on one v1 value catches a replay whose header was rearranged, or that
// matches through another v1 after the receiver's secret rotated. A legitimate
// retry from the sender is signed anew, with a new t, and is not a replay.
func payloadKey(ts string, b body) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	for _, p := range b {
		h.Write(p)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// delivery is one payload handed to Next: done is closed when Next finished,
// after ok was set.
type delivery struct {
	done chan struct{}
	ok   bool
}

// seenSet remembers the payloads forwarded, in a bounded LRU. Entries are
// not expired by time: once a payload's timestamp is out of tolerance its
// replays fail Verify before the set is asked, so old entries only wait to be
// evicted by newer ones. It is safe for concurrent use.
type seenSet struct {
	mu  sync.Mutex
	lru *simplelru.LRU[[sha256.Size]byte, *delivery]

	onWait func() // tests: called when claim starts waiting
}

func newSeenSet(size int) *seenSet {
	l, err := simplelru.NewLRU[[sha256.Size]byte, *delivery](size, nil)
	if err != nil { // only for size <= 0, which the caller rules out
		panic(err)
	}
	return &seenSet{lru: l}
}

// claim returns a new delivery for key that the caller must release, or
// replay true when an identical payload was already answered 2xx. While one
// is in flight, it waits for its outcome; it fails only when ctx ends first.
func (s *seenSet) claim(ctx context.Context, key [sha256.Size]byte) (d *delivery, replay bool, err error) {
	for {
		s.mu.Lock()
		cur, found := s.lru.Get(key)
		if !found {
			d = &delivery{done: make(chan struct{})}
			s.lru.Add(key, d)
			s.mu.Unlock()
			return d, false, nil
		}
		s.mu.Unlock()
		if s.onWait != nil {
			s.onWait()
		}
		select {
		case <-cur.done:
			if cur.ok {
				return nil, true, nil
			}
			// It failed and was removed: try to claim it ourselves.
		case <-ctx.Done():
			return nil, false, context.Cause(ctx)
		}
	}
}

// release records the outcome of d. A failed delivery is forgotten so that
// an identical one is forwarded as if new.
func (s *seenSet) release(key [sha256.Size]byte, d *delivery, ok bool) {
	s.mu.Lock()
	d.ok = ok
	if !ok {
		if cur, found := s.lru.Peek(key); found && cur == d {
			s.lru.Remove(key)
		}
	}
	s.mu.Unlock()
	close(d.done)
}
