package apiauth

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Store is the set of API keys a server accepts, plus the nonces their
// requests have used. The zero value is an empty store with a nonce cache
// of DefaultNonceLimit entries, ready to use. A Store is safe for
// concurrent use and must not be copied after first use. It never calls
// out while holding its lock, so callers may use it under their own.
type Store struct {
	mu     sync.Mutex
	keys   map[string]*entry
	nonces nonceCache
}

// entry is a stored key with its scope set; replaced, never modified.
type entry struct {
	Key
	scopes map[string]bool
}

// Set adds k or replaces the key with the same ID (for example to rotate
// its secret, which takes effect from the next request, or to lock it).
// It returns an error for a malformed key and then changes nothing.
func (s *Store) Set(k Key) error {
	k, scopes, err := k.check()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]*entry{}
	}
	s.keys[k.ID] = &entry{Key: k, scopes: scopes}
	return nil
}

// Update applies change to a copy of key id and stores the result with
// Set's rules; change may replace the copy's Scopes and AllowIPs but not
// modify them, and runs without the store's lock. It returns the stored
// key, or ErrUnknownKey (wrapped, naming id) or Set's validation error.
func (s *Store) Update(id string, change func(*Key)) (Key, error) {
	s.mu.Lock()
	en := s.keys[id]
	s.mu.Unlock()
	if en == nil {
		return Key{}, fmt.Errorf("%w: %s", ErrUnknownKey, id)
	}
	k := en.Key
	change(&k)
	k, scopes, err := k.check()
	if err != nil {
		return Key{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[id] != nil {
		s.keys[id] = &entry{Key: k, scopes: scopes}
	}
	return k, nil
}

// Replace makes keys the whole set of keys and forgets every used nonce.
// When a key is malformed it returns the error and changes nothing; a
// later key replaces an earlier one with the same ID.
func (s *Store) Replace(keys []Key) error {
	m := make(map[string]*entry, len(keys))
	for _, k := range keys {
		k, scopes, err := k.check()
		if err != nil {
			return err
		}
		m[k.ID] = &entry{Key: k, scopes: scopes}
	}
	s.mu.Lock()
	s.keys = m
	s.mu.Unlock()
	s.nonces.reset()
	return nil
}

// Get returns key id as stored (normalised by Set) and whether it exists.
// Its slices are shared and must not be modified.
func (s *Store) Get(id string) (Key, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if en := s.keys[id]; en != nil {
		return en.Key, true
	}
	return Key{}, false
}

// Keys returns every stored key, sorted by ID; their slices are shared and
// must not be modified.
func (s *Store) Keys() []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Key, 0, len(s.keys))
	for _, id := range slices.Sorted(maps.Keys(s.keys)) {
		out = append(out, s.keys[id].Key)
	}
	return out
}

// SetNonceLimit bounds the nonce cache to n unexpired entries (n <= 0:
// DefaultNonceLimit). When the cache is full, Verify refuses new nonces
// with 429 nonce_cache_full until the oldest expires.
func (s *Store) SetNonceLimit(n int) {
	s.nonces.mu.Lock()
	s.nonces.max = n
	s.nonces.mu.Unlock()
}

// lookup returns a snapshot of key id and its secret when it exists and
// is not locked, or nil.
func (s *Store) lookup(id string) (string, *Principal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	en := s.keys[id]
	if en == nil || en.Locked {
		return "", nil
	}
	return en.Secret, &Principal{Key: en.Key, scopes: en.scopes}
}

// Principal is the key a request was verified with: a snapshot of the
// stored Key (later changes to the store do not show). Its slices must not
// be modified; it is safe for concurrent reads.
type Principal struct {
	Key
	scopes map[string]bool
}

// Allows reports whether the key has scope.
func (p *Principal) Allows(scope string) bool { return p.scopes[scope] }
