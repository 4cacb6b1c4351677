package apiauth_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"khproxy/emulator/apiauth"
	"khproxy/internal/testutil"
)

// The spec §1.2 test vector. Both signatures were checked with openssl:
//
//	printf 'GET\n/v1/services?page=2\n1700000000\n3f9a1c0e5b7d24681ace0bdf13579bdf\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' |
//	  openssl dgst -sha256 -hmac EXAMPLESECRET0123456789ABCDEFGHI
//	printf 'POST\n/v1/orders\n1700000000\n3f9a1c0e5b7d24681ace0bdf13579bdf\n05e611ac424bf9c68c15fad3de79181d0b774445e62dfaf1b2863e50b16b5a59' |
//	  openssl dgst -sha256 -hmac EXAMPLESECRET0123456789ABCDEFGHI
const (
	secret  = "EXAMPLESECRET0123456789ABCDEFGHI"
	keyID   = "kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	specTS  = "1700000000"
	nonce   = "3f9a1c0e5b7d24681ace0bdf13579bdf"
	getSig  = "acaa5f8d039c712064181cc692441fcb20328928aa6a452cf336bead55997f59"
	postSig = "6e6ed58b76b760e2c963ea45625bb84adadea0f878679a8117a29aeb7e550831"
	body    = `{"product_id":42,"billing_cycle":"monthly"}`
)

var specNow = time.Unix(1700000000, 0)

// signed is a request with the four headers; sig "" signs it with
// testutil.Signature (the test suite's own signer).
type signed struct {
	method, path, body, ts, nonce, sig, remote string
}

func (s signed) request(t testing.TB) *http.Request {
	t.Helper()
	if s.method == "" {
		s.method, s.path, s.ts, s.nonce, s.sig = "GET", "/v1/services?page=2", specTS, nonce, getSig
	}
	r := httptest.NewRequest(s.method, s.path, strings.NewReader(s.body))
	if s.remote != "" {
		r.RemoteAddr = s.remote
	}
	if s.sig == "" {
		s.sig = testutil.Signature(secret, s.method, s.path, s.ts, s.nonce, []byte(s.body))
	}
	r.Header.Set(apiauth.HeaderKey, keyID)
	r.Header.Set(apiauth.HeaderTimestamp, s.ts)
	r.Header.Set(apiauth.HeaderNonce, s.nonce)
	r.Header.Set(apiauth.HeaderSignature, s.sig)
	return r
}

func newStore(t testing.TB, keys ...apiauth.Key) *apiauth.Store {
	t.Helper()
	if keys == nil {
		keys = []apiauth.Key{{ID: keyID, Secret: secret}}
	}
	s := &apiauth.Store{}
	if err := s.Replace(keys); err != nil {
		t.Fatal(err)
	}
	return s
}

// verify runs Verify with r's body as the body reader.
func verify(s *apiauth.Store, r *http.Request, signedPath string, now time.Time) (*apiauth.Principal, []byte, error) {
	return s.Verify(r, signedPath, now, func() ([]byte, error) {
		return io.ReadAll(r.Body)
	})
}

func TestVerifySpecVector(t *testing.T) {
	tests := []struct {
		name string
		req  signed
	}{
		{"GET, empty body", signed{method: "GET", path: "/v1/services?page=2", ts: specTS, nonce: nonce, sig: getSig}},
		{"POST with body", signed{method: "POST", path: "/v1/orders", body: body, ts: specTS, nonce: nonce, sig: postSig}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := testutil.Signature(secret, tc.req.method, tc.req.path, tc.req.ts, tc.req.nonce, []byte(tc.req.body)); got != tc.req.sig {
				t.Errorf("test signer: got %s, want %s", got, tc.req.sig)
			}
			p, b, err := verify(newStore(t), tc.req.request(t), tc.req.path, specNow)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.ID != keyID || string(b) != tc.req.body {
				t.Errorf("got key %s body %q, want %s %q", p.ID, b, keyID, tc.req.body)
			}
		})
	}
}

func TestVerifyRefusals(t *testing.T) {
	locked := apiauth.Key{ID: keyID, Secret: secret, Locked: true}
	whitelisted := apiauth.Key{ID: keyID, Secret: secret, AllowIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	tests := []struct {
		name       string
		keys       []apiauth.Key
		mutate     func(http.Header)
		req        signed
		now        time.Time
		wantStatus int
		wantReason string
	}{
		{"missing key", nil, del(apiauth.HeaderKey), signed{}, specNow, 401, apiauth.ReasonMissingHeaders},
		{"missing timestamp", nil, del(apiauth.HeaderTimestamp), signed{}, specNow, 401, apiauth.ReasonMissingHeaders},
		{"missing nonce", nil, del(apiauth.HeaderNonce), signed{}, specNow, 401, apiauth.ReasonMissingHeaders},
		{"empty signature", nil, set(apiauth.HeaderSignature, ""), signed{}, specNow, 401, apiauth.ReasonMissingHeaders},
		{"lowercase key", nil, set(apiauth.HeaderKey, strings.ToLower(keyID)), signed{}, specNow, 401, apiauth.ReasonBadKey},
		{"two keys", nil, add(apiauth.HeaderKey, keyID), signed{}, specNow, 401, apiauth.ReasonBadKey},
		{"millisecond timestamp", nil, set(apiauth.HeaderTimestamp, "1700000000000"), signed{}, specNow, 401, apiauth.ReasonBadTimestamp},
		{"short nonce", nil, set(apiauth.HeaderNonce, "abc"), signed{}, specNow, 401, apiauth.ReasonBadNonce},
		{"padded nonce", nil, set(apiauth.HeaderNonce, "AAAAAAAAAAAAAAAAAAAAAA=="), signed{}, specNow, 401, apiauth.ReasonBadNonce},
		{"uppercase signature", nil, set(apiauth.HeaderSignature, strings.ToUpper(getSig)), signed{}, specNow, 401, apiauth.ReasonBadSignature},
		{"301 s late", nil, nil, signed{}, specNow.Add(301 * time.Second), 401, apiauth.ReasonTimestampWindow},
		{"301 s early", nil, nil, signed{}, specNow.Add(-301 * time.Second), 401, apiauth.ReasonTimestampWindow},
		{"unknown key", []apiauth.Key{{ID: "kh_live_00000000000000000000000000000000", Secret: secret}}, nil, signed{}, specNow, 401, apiauth.ReasonUnknownKey},
		{"locked key", []apiauth.Key{locked}, nil, signed{}, specNow, 401, apiauth.ReasonUnknownKey},
		{"other path", nil, nil, signed{method: "GET", path: "/v1/services?page=3", ts: specTS, nonce: nonce, sig: getSig}, specNow, 401, apiauth.ReasonSignatureFailed},
		{"other body", nil, nil, signed{method: "POST", path: "/v1/orders", body: body + " ", ts: specTS, nonce: nonce, sig: postSig}, specNow, 401, apiauth.ReasonSignatureFailed},
		{"other secret", []apiauth.Key{{ID: keyID, Secret: secret + "x"}}, nil, signed{}, specNow, 401, apiauth.ReasonSignatureFailed},
		{"address not whitelisted", []apiauth.Key{whitelisted}, nil, signed{}, specNow, 401, apiauth.ReasonIPNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req.request(t)
			if tc.mutate != nil {
				tc.mutate(r.Header)
			}
			path := tc.req.path
			if path == "" {
				path = "/v1/services?page=2"
			}
			_, _, err := verify(newStore(t, tc.keys...), r, path, tc.now)
			wantRefusal(t, err, tc.wantStatus, tc.wantReason)
		})
	}
}

func TestVerifyWhitelistedAddress(t *testing.T) {
	k := apiauth.Key{ID: keyID, Secret: secret, AllowIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}}
	for _, remote := range []string{"10.1.2.3:5000", "[::ffff:10.1.2.3]:5000", "[2001:db8::1]:443"} {
		t.Run(remote, func(t *testing.T) {
			if _, _, err := verify(newStore(t, k), signed{remote: remote}.request(t), "/v1/services?page=2", specNow); err != nil {
				t.Errorf("got %v, want accepted", err)
			}
		})
	}
}

func TestVerifyTimestampEdges(t *testing.T) {
	tests := []struct {
		skew   time.Duration // server time minus KH-Timestamp
		wantOK bool
	}{
		{-301 * time.Second, false}, {-300 * time.Second, true}, {0, true},
		{300 * time.Second, true}, {300*time.Second + 999*time.Millisecond, true}, {301 * time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.skew.String(), func(t *testing.T) {
			_, _, err := verify(newStore(t), signed{}.request(t), "/v1/services?page=2", specNow.Add(tc.skew))
			if tc.wantOK {
				if err != nil {
					t.Errorf("got %v, want accepted", err)
				}
				return
			}
			rf := wantRefusal(t, err, 401, apiauth.ReasonTimestampWindow)
			if rf != nil && !strings.Contains(rf.Detail, "301 s away") {
				t.Errorf("detail %q does not name the skew", rf.Detail)
			}
		})
	}
}

func TestVerifyNonce(t *testing.T) {
	// at signs the same nonce at now+d with a fresh timestamp.
	at := func(d time.Duration, n string) (*http.Request, time.Time) {
		now := specNow.Add(d)
		return signed{method: "GET", path: "/v1/me", ts: strconv.FormatInt(now.Unix(), 10), nonce: n}.request(t), now
	}
	tests := []struct {
		name       string
		second     time.Duration // when the nonce is used again
		wantReason string        // "" = accepted
	}{
		{"same second", 0, apiauth.ReasonReplay},
		{"one second before the TTL ends", apiauth.NonceTTL - time.Second, apiauth.ReasonReplay},
		{"when the TTL ends", apiauth.NonceTTL, ""},
		{"after the TTL", apiauth.NonceTTL + time.Hour, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			r, now := at(0, nonce)
			if _, _, err := verify(s, r, "/v1/me", now); err != nil {
				t.Fatalf("first use: %v", err)
			}
			r, now = at(tc.second, nonce)
			_, _, err := verify(s, r, "/v1/me", now)
			if tc.wantReason == "" {
				if err != nil {
					t.Errorf("got %v, want accepted", err)
				}
				return
			}
			wantRefusal(t, err, 401, tc.wantReason)
		})
	}
	t.Run("refused request burns no nonce", func(t *testing.T) {
		s := newStore(t)
		r, now := at(0, nonce)
		r.Header.Set(apiauth.HeaderSignature, getSig) // well formed, wrong
		_, _, err := verify(s, r, "/v1/me", now)
		wantRefusal(t, err, 401, apiauth.ReasonSignatureFailed)
		r, now = at(0, nonce)
		if _, _, err := verify(s, r, "/v1/me", now); err != nil {
			t.Errorf("got %v, want accepted", err)
		}
	})
	t.Run("replace forgets nonces", func(t *testing.T) {
		s := newStore(t)
		r, now := at(0, nonce)
		verify(s, r, "/v1/me", now)
		if err := s.Replace([]apiauth.Key{{ID: keyID, Secret: secret}}); err != nil {
			t.Fatal(err)
		}
		r, now = at(0, nonce)
		if _, _, err := verify(s, r, "/v1/me", now); err != nil {
			t.Errorf("got %v, want accepted", err)
		}
	})
	t.Run("full cache", func(t *testing.T) {
		s := newStore(t)
		s.SetNonceLimit(1)
		r, now := at(0, nonce)
		if _, _, err := verify(s, r, "/v1/me", now); err != nil {
			t.Fatalf("first nonce: %v", err)
		}
		r, now = at(10*time.Second, "another-nonce-of-22-chars")
		rf := wantRefusal(t, verifyErr(s, r, now), http.StatusTooManyRequests, apiauth.ReasonNonceCacheFull)
		if rf != nil && rf.RetryAfter != apiauth.NonceTTL-10*time.Second {
			t.Errorf("RetryAfter: got %v, want %v", rf.RetryAfter, apiauth.NonceTTL-10*time.Second)
		}
		r, now = at(apiauth.NonceTTL, "another-nonce-of-22-chars")
		if err := verifyErr(s, r, now); err != nil {
			t.Errorf("after the oldest expired: got %v, want accepted", err)
		}
	})
}

func verifyErr(s *apiauth.Store, r *http.Request, now time.Time) error {
	_, _, err := verify(s, r, "/v1/me", now)
	return err
}

func TestVerifyBodyReader(t *testing.T) {
	errBody := errors.New("body too large")
	calls := 0
	read := func() ([]byte, error) { calls++; return nil, errBody }
	s := newStore(t)
	if _, _, err := s.Verify(signed{}.request(t), "/v1/services?page=2", specNow, read); !errors.Is(err, errBody) {
		t.Errorf("got %v, want the body reader's error", err)
	}
	// The key is checked before the body is read.
	s = newStore(t, apiauth.Key{ID: keyID, Secret: secret, Locked: true})
	_, _, err := s.Verify(signed{}.request(t), "/v1/services?page=2", specNow, read)
	wantRefusal(t, err, 401, apiauth.ReasonUnknownKey)
	if calls != 1 {
		t.Errorf("body reader called %d times, want 1", calls)
	}
}

func wantRefusal(t testing.TB, err error, status int, reason string) *apiauth.Refusal {
	t.Helper()
	var rf *apiauth.Refusal
	if !errors.As(err, &rf) {
		t.Errorf("got %v, want a refusal %s", err, reason)
		return nil
	}
	if rf.Status != status || rf.Reason != reason || rf.Detail == "" {
		t.Errorf("got %d %s %q, want %d %s", rf.Status, rf.Reason, rf.Detail, status, reason)
	}
	return rf
}

func del(name string) func(http.Header) { return func(h http.Header) { h.Del(name) } }

func set(name, v string) func(http.Header) { return func(h http.Header) { h.Set(name, v) } }

func add(name, v string) func(http.Header) { return func(h http.Header) { h.Add(name, v) } }
