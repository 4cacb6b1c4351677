package apiauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Request authentication headers (spec §1.1).
const (
	HeaderKey       = "KH-Key"
	HeaderTimestamp = "KH-Timestamp"
	HeaderNonce     = "KH-Nonce"
	HeaderSignature = "KH-Signature"
)

const (
	// TimestampWindow is how far KH-Timestamp may be from server time,
	// either way, inclusive (spec §1.3).
	TimestampWindow = 300 * time.Second
	// NonceTTL is how long a (key, nonce) pair stays used (spec §1.3).
	NonceTTL = 600 * time.Second
	// DefaultNonceLimit is the nonce cache's bound when none is set.
	DefaultNonceLimit = 200000
)

// Refusal reasons, in the order Verify checks them. All come with status
// 401 except ReasonNonceCacheFull (429, the emulator's own).
const (
	ReasonMissingHeaders  = "missing_headers"
	ReasonBadKey          = "bad_key"
	ReasonBadTimestamp    = "bad_timestamp"
	ReasonBadNonce        = "bad_nonce"
	ReasonBadSignature    = "bad_signature"
	ReasonTimestampWindow = "timestamp_out_of_window"
	ReasonUnknownKey      = "unknown_or_locked_key"
	ReasonSignatureFailed = "signature_mismatch"
	ReasonIPNotAllowed    = "ip_not_allowed"
	ReasonReplay          = "replay_detected"
	ReasonNonceCacheFull  = "nonce_cache_full"
)

// Refusal is why Verify refused a request: the HTTP status (401, or 429
// for a full nonce cache), the problem's reason and its human detail, and
// for a 429 how long to wait. It is a plain value.
type Refusal struct {
	Status     int
	Reason     string
	Detail     string
	RetryAfter time.Duration // > 0 only with status 429
}

// Error returns the reason and the detail.
func (r *Refusal) Error() string { return r.Reason + ": " + r.Detail }

func unauthorized(reason, detail string) *Refusal {
	return &Refusal{Status: http.StatusUnauthorized, Reason: reason, Detail: detail}
}

var (
	timestampPattern = regexp.MustCompile(`^[0-9]{10}$`)
	noncePattern     = regexp.MustCompile(`^[A-Za-z0-9_-]{22,44}$`)
	signaturePattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Verify checks the signed request r against the store (spec §1): the
// four KH-* headers present once and well formed, KH-Timestamp within
// TimestampWindow of now (server time), the key known and not locked, the
// signature over r.Method, signedPath, the timestamp, the nonce and the
// body, the client address on the key's whitelist, the nonce not used
// within NonceTTL. It stops at the first failure, in that order, with a
// *Refusal. body is called once, after the key lookup and before the
// signature check, to read the request body; its error is returned as is.
// A refused request uses up no nonce. Safe for concurrent use.
func (s *Store) Verify(r *http.Request, signedPath string, now time.Time, body func() ([]byte, error)) (*Principal, []byte, error) {
	names := [...]string{HeaderKey, HeaderTimestamp, HeaderNonce, HeaderSignature}
	var vals [4]string
	var missing []string
	for i, n := range names {
		vs := r.Header.Values(n)
		switch {
		case len(vs) == 0 || vs[0] == "":
			missing = append(missing, n)
		case len(vs) > 1:
			vals[i] = "\x00" // several values: fails the format check below
		default:
			vals[i] = vs[0]
		}
	}
	if len(missing) > 0 {
		return nil, nil, unauthorized(ReasonMissingHeaders, "Missing required header(s): "+strings.Join(missing, ", ")+".")
	}
	keyID, ts, nonce, sig := vals[0], vals[1], vals[2], vals[3]
	switch {
	case !KeyIDPattern.MatchString(keyID):
		return nil, nil, unauthorized(ReasonBadKey, "KH-Key must match ^kh_live_[A-Z0-9]{32}$.")
	case !timestampPattern.MatchString(ts):
		return nil, nil, unauthorized(ReasonBadTimestamp, "KH-Timestamp must be Unix time in seconds, 10 digits.")
	case !noncePattern.MatchString(nonce):
		return nil, nil, unauthorized(ReasonBadNonce, "KH-Nonce must be 22-44 characters of [A-Za-z0-9_-].")
	case !signaturePattern.MatchString(sig):
		return nil, nil, unauthorized(ReasonBadSignature, "KH-Signature must be 64 lowercase hex characters.")
	}
	tsVal, _ := strconv.ParseInt(ts, 10, 64) // 10 digits: always fits
	skew := now.Unix() - tsVal
	if skew > int64(TimestampWindow/time.Second) || -skew > int64(TimestampWindow/time.Second) {
		return nil, nil, unauthorized(ReasonTimestampWindow, fmt.Sprintf(
			"KH-Timestamp is %d s away from server time (allowed: ±%d s); the Date response header carries server time.",
			abs(skew), int64(TimestampWindow/time.Second)))
	}
	secret, p := s.lookup(keyID)
	if p == nil {
		return nil, nil, unauthorized(ReasonUnknownKey, "The API key is unknown or locked.")
	}
	b, err := body()
	if err != nil {
		return nil, nil, err
	}
	want := sign(secret, r.Method, signedPath, ts, nonce, b)
	got, _ := hex.DecodeString(sig) // format checked above
	if !hmac.Equal(want, got) {
		return nil, nil, unauthorized(ReasonSignatureFailed, "The signature does not match the request.")
	}
	// After the signature, so that only the key's holder learns that the
	// key has a whitelist; before the nonce, so a refused request burns none.
	if !p.ipAllowed(r.RemoteAddr) {
		return nil, nil, unauthorized(ReasonIPNotAllowed, "The client address is not on this key's IP whitelist.")
	}
	ok, retry := s.nonces.use(keyID+"\x00"+nonce, now)
	if !ok && retry == 0 {
		return nil, nil, unauthorized(ReasonReplay, "This nonce was already used within the last 600 s.")
	}
	if !ok {
		return nil, nil, &Refusal{Status: http.StatusTooManyRequests, Reason: ReasonNonceCacheFull,
			Detail: "The emulator's nonce cache is full; retry later.", RetryAfter: retry}
	}
	return p, b, nil
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// sign returns the raw HMAC-SHA256 of the signing string (spec §1.2).
func sign(secret, method, path, ts, nonce string, body []byte) []byte {
	sum := sha256.Sum256(body)
	mac := hmac.New(sha256.New, []byte(secret))
	io.WriteString(mac, method+"\n"+path+"\n"+ts+"\n"+nonce+"\n"+hex.EncodeToString(sum[:]))
	return mac.Sum(nil)
}

// nonceCache remembers used (key, nonce) pairs for NonceTTL. It is
// bounded: when full of unexpired entries, use refuses new ones. max <= 0
// means DefaultNonceLimit.
type nonceCache struct {
	mu      sync.Mutex
	m       map[string]time.Time // value: expiry
	max     int
	inserts int
}

// reset forgets every nonce.
func (c *nonceCache) reset() {
	c.mu.Lock()
	c.m, c.inserts = nil, 0
	c.mu.Unlock()
}

// use records k as used at now. It returns ok=true on first use; ok=false
// with retry=0 for a replay; ok=false with retry>0 when the cache is full
// (retry: until the oldest entry expires).
func (c *nonceCache) use(k string, now time.Time) (ok bool, retry time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]time.Time)
	}
	if exp, found := c.m[k]; found && now.Before(exp) {
		return false, 0
	}
	limit := c.max
	if limit <= 0 {
		limit = DefaultNonceLimit
	}
	c.inserts++
	if len(c.m) >= limit || c.inserts%4096 == 0 {
		soonest := time.Duration(0)
		for key, exp := range c.m {
			if !now.Before(exp) {
				delete(c.m, key)
			} else if d := exp.Sub(now); soonest == 0 || d < soonest {
				soonest = d
			}
		}
		if len(c.m) >= limit {
			return false, max(soonest, time.Second)
		}
	}
	c.m[k] = now.Add(NonceTTL)
	return true, 0
}
