package emulator

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
	timestampWindow = 300 * time.Second
	nonceTTL        = 600 * time.Second
)

var (
	keyPattern       = regexp.MustCompile(`^kh_live_[A-Z0-9]{32}$`)
	timestampPattern = regexp.MustCompile(`^[0-9]{10}$`)
	noncePattern     = regexp.MustCompile(`^[A-Za-z0-9_-]{22,44}$`)
	signaturePattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// authenticate runs the checks of spec §1 in the order documented in
// doc.go and returns the verified key and the raw body bytes.
func (e *Emulator) authenticate(r *http.Request, signedPath string, serverNow time.Time) (*keyState, []byte, *apiError) {
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
		return nil, nil, authError("missing_headers", "Missing required header(s): "+strings.Join(missing, ", ")+".")
	}
	keyID, ts, nonce, sig := vals[0], vals[1], vals[2], vals[3]
	switch {
	case !keyPattern.MatchString(keyID):
		return nil, nil, authError("bad_key", "KH-Key must match ^kh_live_[A-Z0-9]{32}$.")
	case !timestampPattern.MatchString(ts):
		return nil, nil, authError("bad_timestamp", "KH-Timestamp must be Unix time in seconds, 10 digits.")
	case !noncePattern.MatchString(nonce):
		return nil, nil, authError("bad_nonce", "KH-Nonce must be 22-44 characters of [A-Za-z0-9_-].")
	case !signaturePattern.MatchString(sig):
		return nil, nil, authError("bad_signature", "KH-Signature must be 64 lowercase hex characters.")
	}
	tsVal, _ := strconv.ParseInt(ts, 10, 64) // 10 digits: always fits
	skew := serverNow.Unix() - tsVal
	if skew > int64(timestampWindow/time.Second) || -skew > int64(timestampWindow/time.Second) {
		return nil, nil, authError("timestamp_out_of_window", fmt.Sprintf(
			"KH-Timestamp is %d s away from server time (allowed: ±%d s); the Date response header carries server time.",
			abs(skew), int64(timestampWindow/time.Second)))
	}
	secret, ks := e.lookupKey(keyID)
	if ks == nil {
		return nil, nil, authError("unknown_or_locked_key", "The API key is unknown or locked.")
	}
	body, ae := e.readBody(r)
	if ae != nil {
		return nil, nil, ae
	}
	want := sign(secret, r.Method, signedPath, ts, nonce, body)
	got, _ := hex.DecodeString(sig) // format checked above
	if !hmac.Equal(want, got) {
		return nil, nil, authError("signature_mismatch", "The signature does not match the request.")
	}
	// After the signature, so that only the key's holder learns that the
	// key has a whitelist; before the nonce, so a refused request burns none.
	if !ks.ipAllowed(r.RemoteAddr) {
		return nil, nil, authError("ip_not_allowed", "The client address is not on this key's IP whitelist.")
	}
	ok, retry := e.nonces.use(keyID+"\x00"+nonce, serverNow)
	if !ok && retry == 0 {
		return nil, nil, authError("replay_detected", "This nonce was already used within the last 600 s.")
	}
	if !ok {
		return nil, nil, &apiError{code: codeRateLimited, reason: "nonce_cache_full",
			detail: "The emulator's nonce cache is full; retry later.", retryAfter: retry}
	}
	return ks, body, nil
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

// readBody reads the whole body, at most e.maxBody bytes.
func (e *Emulator) readBody(r *http.Request) ([]byte, *apiError) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, e.maxBody+1))
	if err != nil {
		return nil, validationError("body", "could not read the request body")
	}
	if int64(len(body)) > e.maxBody {
		return nil, validationError("body", fmt.Sprintf("must not exceed %d bytes", e.maxBody))
	}
	return body, nil
}

// nonceCache remembers used (key, nonce) pairs for nonceTTL. It is bounded:
// when full of unexpired entries, use refuses new ones.
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
	c.inserts++
	if len(c.m) >= c.max || c.inserts%4096 == 0 {
		soonest := time.Duration(0)
		for key, exp := range c.m {
			if !now.Before(exp) {
				delete(c.m, key)
			} else if d := exp.Sub(now); soonest == 0 || d < soonest {
				soonest = d
			}
		}
		if len(c.m) >= c.max {
			return false, max(soonest, time.Second)
		}
	}
	c.m[k] = now.Add(nonceTTL)
	return true, 0
}
