package emulator

import (
	"context"
	"crypto/sha256"
	"fmt"
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

// InProgress is what a request gets whose Idempotency-Key (same API key,
// same request) belongs to a request that is still being answered. The
// spec does not say what the API does; both are the emulator's choices,
// so that clients can be tested against either.
type InProgress string

const (
	// InProgressConflict answers at once 409 idempotency_conflict, reason
	// request_in_progress, with Retry-After: 1 (the default).
	InProgressConflict InProgress = "409"
	// InProgressReplay makes the request wait until the first one is
	// answered, then replays its stored answer (Idempotent-Replayed:
	// true). When the first one is not stored (a 5xx), the waiting request
	// runs itself. It waits at most MaxInProgressWait, then gets the 409.
	InProgressReplay InProgress = "replay"
)

// MaxInProgressWait bounds how long InProgressReplay holds a request.
const MaxInProgressWait = 2 * time.Minute

// ParseInProgress reads "409" or "replay" ("" means "409") and returns an
// error for anything else.
func ParseInProgress(s string) (InProgress, error) {
	switch m := InProgress(s); m {
	case "", InProgressConflict:
		return InProgressConflict, nil
	case InProgressReplay:
		return m, nil
	}
	return "", fmt.Errorf("emulator: in-progress mode %q: want 409 or replay", s)
}

// SetInProgress changes at run time what a request gets whose key is in
// progress. It is safe for concurrent use and returns an error for an
// unknown mode.
func (e *Emulator) SetInProgress(m InProgress) error {
	m, err := ParseInProgress(string(m))
	if err != nil {
		return err
	}
	e.idem.setInProgress(m)
	return nil
}

// InProgress returns the current in-progress mode. Safe for concurrent use.
func (e *Emulator) InProgress() InProgress {
	e.idem.mu.Lock()
	defer e.idem.mu.Unlock()
	return e.idem.mode()
}

type idemEntry struct {
	fingerprint [32]byte
	done        bool
	resp        *response
	expires     time.Time
	ready       chan struct{} // closed when the running request is finished (stored or released)
}

// idemStore keeps answers per (API key, Idempotency-Key) for 24 h. It is
// bounded by max entries; finished entries expire, running ones never do.
type idemStore struct {
	mu         sync.Mutex
	m          map[string]*idemEntry
	max        int
	inProgress InProgress // "" means InProgressConflict
}

func (s *idemStore) setInProgress(m InProgress) {
	s.mu.Lock()
	s.inProgress = m
	s.mu.Unlock()
}

// mode returns the in-progress mode; s.mu must be held.
func (s *idemStore) mode() InProgress {
	if s.inProgress == "" {
		return InProgressConflict
	}
	return s.inProgress
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

// errInProgress answers a request whose key is in progress.
func errInProgress() *apiError {
	return &apiError{code: codeIdemConflict, reason: "request_in_progress",
		detail:     "A request with this Idempotency-Key is still in progress; retry later with the same key and body.",
		retryAfter: time.Second}
}

// begin claims (apiKey, idemKey). It returns either a ticket (run the
// handler, then finish the ticket), a stored answer to replay, or an
// error. In InProgressReplay mode it waits for a running request with
// the key, at most MaxInProgressWait and until ctx is done or closing is
// closed (then it returns the 409).
func (s *idemStore) begin(ctx context.Context, closing <-chan struct{}, apiKey, idemKey string, fp [32]byte, now func() time.Time) (*idemTicket, *response, *apiError) {
	var timeout <-chan time.Time
	for {
		t, resp, ae, wait := s.try(apiKey, idemKey, fp, now())
		if wait == nil {
			return t, resp, ae
		}
		if timeout == nil {
			tm := time.NewTimer(MaxInProgressWait)
			defer tm.Stop()
			timeout = tm.C
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, nil, errInProgress()
		case <-closing:
			return nil, nil, errInProgress()
		case <-timeout:
			return nil, nil, errInProgress()
		}
	}
}

// try is one attempt of begin; a non-nil wait means: wait for it, then
// try again.
func (s *idemStore) try(apiKey, idemKey string, fp [32]byte, now time.Time) (*idemTicket, *response, *apiError, <-chan struct{}) {
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
				detail: "This Idempotency-Key was already used with a different request body or endpoint."}, nil
		case !ent.done && s.mode() == InProgressReplay:
			return nil, nil, nil, ent.ready
		case !ent.done:
			return nil, nil, errInProgress(), nil
		default:
			return nil, ent.resp.clone(), nil, nil
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
				detail: "The emulator's idempotency store is full; nothing was done.", retryAfter: time.Minute}, nil
		}
	}
	ent := &idemEntry{fingerprint: fp, expires: now.Add(idempotencyTTL), ready: make(chan struct{})}
	s.m[k] = ent
	return &idemTicket{s: s, key: k, entry: ent}, nil, nil, nil
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
		defer close(t.entry.ready)
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
