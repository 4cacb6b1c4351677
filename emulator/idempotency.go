package emulator

import (
	"crypto/sha256"
	"net/http"
	"regexp"
	"sync"
	"time"
)

// HeaderIdempotencyKey is the idempotency header (spec §2).
const HeaderIdempotencyKey = "Idempotency-Key"

// HeaderReplayed marks an answer replayed from the idempotency store
// (emulator addition; the spec documents no such header).
const HeaderReplayed = "Idempotent-Replayed"

const idempotencyTTL = 24 * time.Hour

var idemKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,80}$`)

// storedHeaders are the response headers kept with an idempotent answer.
var storedHeaders = []string{"Content-Type", "Location", "X-Content-Type-Options"}

type idemEntry struct {
	fingerprint [32]byte
	done        bool
	resp        *response
	expires     time.Time
}

// idemStore keeps answers per (API key, Idempotency-Key) for 24 h. It is
// bounded by max entries; finished entries expire, running ones never do.
type idemStore struct {
	mu  sync.Mutex
	m   map[string]*idemEntry
	max int
}

// idemTicket is the claim a running request holds on its entry.
type idemTicket struct {
	s     *idemStore
	key   string
	entry *idemEntry
	once  sync.Once
}

func fingerprint(method, path string, body []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(method + "\n" + path + "\n"))
	h.Write(body)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// reset forgets every record; running requests finish unrecorded.
func (s *idemStore) reset() {
	s.mu.Lock()
	s.m = nil
	s.mu.Unlock()
}

// begin claims (apiKey, idemKey). It returns either a ticket (run the
// handler, then finish the ticket), a stored answer to replay, or an error.
func (s *idemStore) begin(apiKey, idemKey string, fp [32]byte, now time.Time) (*idemTicket, *response, *apiError) {
	k := apiKey + "\x00" + idemKey
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*idemEntry)
	}
	if ent, ok := s.m[k]; ok {
		switch {
		case ent.done && !now.Before(ent.expires):
			delete(s.m, k)
		case ent.fingerprint != fp:
			return nil, nil, &apiError{code: codeIdemConflict, reason: "body_mismatch",
				detail: "This Idempotency-Key was already used with a different request body or endpoint."}
		case !ent.done:
			return nil, nil, &apiError{code: codeIdemConflict, reason: "request_in_progress",
				detail:     "A request with this Idempotency-Key is still in progress; retry later with the same key and body.",
				retryAfter: time.Second}
		default:
			return nil, ent.resp.clone(), nil
		}
	}
	if len(s.m) >= s.max {
		for key, ent := range s.m {
			if ent.done && !now.Before(ent.expires) {
				delete(s.m, key)
			}
		}
		if len(s.m) >= s.max {
			return nil, nil, &apiError{code: codeCapacity, reason: "idempotency_store_full",
				detail: "The emulator's idempotency store is full; nothing was done.", retryAfter: time.Minute}
		}
	}
	ent := &idemEntry{fingerprint: fp, expires: now.Add(idempotencyTTL)}
	s.m[k] = ent
	return &idemTicket{s: s, key: k, entry: ent}, nil, nil
}

// finish stores resp when it should be kept (status < 500) and releases
// the claim otherwise. Only the first call has an effect; finish(nil)
// releases.
func (t *idemTicket) finish(resp *response) {
	if t == nil {
		return
	}
	t.once.Do(func() {
		t.s.mu.Lock()
		defer t.s.mu.Unlock()
		if resp == nil || resp.status >= 500 {
			if t.s.m[t.key] == t.entry {
				delete(t.s.m, t.key)
			}
			return
		}
		h := http.Header{}
		for _, name := range storedHeaders {
			if v := resp.header.Values(name); len(v) > 0 {
				h[name] = append([]string(nil), v...)
			}
		}
		t.entry.resp = &response{status: resp.status, header: h, body: resp.body}
		t.entry.done = true
	})
}
