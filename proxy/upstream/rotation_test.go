package upstream_test

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"khproxy/proxy/upstream"
	"khproxy/signer"
)

// fakeRotating is a rotating secret: Reread moves to next (when set) and
// counts the calls.
type fakeRotating struct {
	mu      sync.Mutex
	secret  string
	gen     uint64
	next    string // what Reread finds in the "file"; "" for what is there
	err     error  // what Reread returns
	rereads int
}

func (f *fakeRotating) Secret() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []byte(f.secret), nil
}

func (f *fakeRotating) Generation() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen
}

func (f *fakeRotating) Reread() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rereads++
	if f.err != nil {
		return f.gen, f.err
	}
	if f.next != "" && f.next != f.secret {
		f.secret, f.gen = f.next, f.gen+1
	}
	return f.gen, nil
}

// TestSecretRotationRetry: a 401 signature_mismatch makes the Transport
// re-read a rotating secret and, only when it changed, retry once with it,
// whatever RetryMax says (a second mismatch is not re-read again); other
// 401s and static secrets are left alone.
func TestSecretRotationRetry(t *testing.T) {
	mismatch := answer(401, map[string]string{"Content-Type": "application/problem+json"}, `{"type":"auth_failed","reason":"signature_mismatch"}`)
	ok := answer(200, nil, "ok")
	tests := []struct {
		name        string
		source      *fakeRotating // nil: a static secret
		answers     []func(w http.ResponseWriter)
		wantStatus  int
		wantReasons []string
		wantRereads []string
		wantAnswers []string
		wantAuth    string // Call.AuthReason afterwards
	}{
		{"changed: retried once with the new secret", &fakeRotating{secret: "old", gen: 1, next: testSecret},
			[]func(w http.ResponseWriter){mismatch, ok}, 200, []string{"first", "secret_rotated"}, []string{"changed"}, []string{"401 signature_mismatch", "200"}, ""},
		{"unchanged: the 401 passes through", &fakeRotating{secret: "old", gen: 1},
			[]func(w http.ResponseWriter){mismatch}, 401, []string{"first"}, []string{"unchanged"}, []string{"401 signature_mismatch"}, "signature_mismatch"},
		{"unreadable: the 401 passes through", &fakeRotating{secret: "old", gen: 1, err: errors.New("gone")},
			[]func(w http.ResponseWriter){mismatch}, 401, []string{"first"}, []string{"error"}, []string{"401 signature_mismatch"}, "signature_mismatch"},
		{"changed but still rejected: only once", &fakeRotating{secret: "old", gen: 1, next: "also-wrong"},
			[]func(w http.ResponseWriter){mismatch}, 401, []string{"first", "secret_rotated"}, []string{"changed"}, []string{"401 signature_mismatch", "401 signature_mismatch"}, "signature_mismatch"},
		{"another 401 reason: no re-read", &fakeRotating{secret: testSecret, gen: 1, next: "x"},
			[]func(w http.ResponseWriter){answer(401, nil, `{"reason":"unknown_or_locked_key"}`)}, 401, []string{"first"}, nil, []string{"401 unknown_or_locked_key"}, "unknown_or_locked_key"},
		{"static secret: no re-read", nil,
			[]func(w http.ResponseWriter){mismatch}, 401, []string{"first"}, nil, []string{"401 signature_mismatch"}, "signature_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := upstreamServer(t, nil, tt.answers...)
			m := &recMetrics{}
			var src signer.SecretSource = signer.StaticSecret(testSecret)
			if tt.source != nil {
				src = tt.source
			}
			tr := newTransport(t, upstream.Options{Signer: &signer.Signer{Key: testKey, Secret: src}, RetryMax: 0, RetryBudget: 10 * time.Second, Metrics: m})
			c := newCall(t, "/v1/me", "", nil)
			resp, err := send(t, tr, "GET", srv.URL, c)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if !slices.Equal(m.reasons, tt.wantReasons) {
				t.Errorf("attempt reasons %q, want %q", m.reasons, tt.wantReasons)
			}
			if !slices.Equal(m.rereads, tt.wantRereads) {
				t.Errorf("re-read results %q, want %q", m.rereads, tt.wantRereads)
			}
			if !slices.Equal(m.answers, tt.wantAnswers) {
				t.Errorf("answers %q, want %q", m.answers, tt.wantAnswers)
			}
			if tt.source != nil && tt.source.rereads != len(tt.wantRereads) {
				t.Errorf("Reread called %d times, want %d", tt.source.rereads, len(tt.wantRereads))
			}
			if c.AuthReason != tt.wantAuth {
				t.Errorf("Call.AuthReason = %q, want %q", c.AuthReason, tt.wantAuth)
			}
		})
	}
}
