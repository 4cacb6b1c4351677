package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Record is one line of the audit log: one write call, sent or refused.
// Field names are the log's stable schema (docs/security.md, "The audit log").
type Record struct {
	// Time is when the call arrived, RFC 3339 with nanoseconds, UTC.
	Time string `json:"time"`
	// ID is khproxy's request id, also sent to the caller as
	// Khproxy-Request-Id.
	ID string `json:"request_id"`
	// Client is the caller's address.
	Client string `json:"client"`
	Method string `json:"method"`
	// Path is the signed request-target (path and query after the base).
	Path string `json:"path"`
	// Route is its API route template, or "other".
	Route string `json:"route"`
	// Status is what the caller got.
	Status int `json:"status"`
	// Sent reports that the request may have reached the API.
	Sent bool `json:"sent"`
	// UpstreamStatus is the API's answer, 0 when it gave none.
	UpstreamStatus int `json:"upstream_status"`
	// APIRequestID is the API's X-Request-Id (its own audit log's id).
	APIRequestID string `json:"api_request_id,omitempty"`
	// IdempotencyKey and KeySource (auto, client, reused).
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	KeySource      string `json:"idempotency_key_source,omitempty"`
	// OrderID, Amount and Currency, when the API's answer has them.
	OrderID  string `json:"order_id,omitempty"`
	Amount   string `json:"amount,omitempty"`
	Currency string `json:"currency,omitempty"`
	// Shared: the answer of an identical earlier call, given again.
	Shared bool `json:"shared,omitempty"`
	// Error is the kind khproxy answered with itself, "" for the API's
	// answer, and Detail what it told the caller; Rule is set when a
	// guard rule refused the call.
	Error  string `json:"khproxy_error,omitempty"`
	Rule   string `json:"rule,omitempty"`
	Detail string `json:"detail,omitempty"` // khproxy's answer's detail: why
	// Prev is the previous line's hash; Genesis on a file's first line.
	Prev string `json:"prev"`
}

// Genesis is the prev of a file's first line.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// hashKey is how every line ends: `,"hash":"<64 hex>"}`.
const hashKey = `,"hash":"`

// Hash returns the chain hash of a line: hex SHA-256 over the previous
// line's hash (as its 64 hex characters) followed by row, the line's bytes
// without its hash field. This is the API's chain_hash[n] =
// sha256(chain_hash[n-1] || row_n) (spec §4.5); the byte form of both
// parts is khproxy's choice, as the API does not document its own.
func Hash(prev string, row []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(row)
	return hex.EncodeToString(h.Sum(nil))
}

// line encodes rec (rec.Prev set) as one log line, newline included, and
// returns it with its hash.
func line(rec *Record) ([]byte, string, error) {
	row, err := json.Marshal(rec)
	if err != nil {
		return nil, "", err
	}
	hash := Hash(rec.Prev, row)
	b := make([]byte, 0, len(row)+len(hashKey)+64+3)
	b = append(b, row[:len(row)-1]...)
	b = append(b, hashKey...)
	b = append(b, hash...)
	b = append(b, "\"}\n"...)
	return b, hash, nil
}

// parseLine checks one line (without its newline) on its own: its shape,
// and that its hash is the hash of its row and its prev. It returns the
// record and the line's hash.
func parseLine(b []byte) (*Record, string, error) {
	const tail = len(hashKey) + 64 + 2
	if len(b) < tail+2 || !bytes.HasSuffix(b, []byte(`"}`)) || string(b[len(b)-tail:len(b)-tail+len(hashKey)]) != hashKey {
		return nil, "", errors.New(`does not end in ,"hash":"<64 hex digits>"}`)
	}
	hash := string(b[len(b)-64-2 : len(b)-2])
	if _, err := hex.DecodeString(hash); err != nil || hash != lowerHex(hash) {
		return nil, "", errors.New("its hash is not 64 lowercase hex digits")
	}
	row := append(b[:len(b)-tail:len(b)-tail], '}')
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(row))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil || dec.More() {
		return nil, "", fmt.Errorf("is not a record: %v", err)
	}
	if want := Hash(rec.Prev, row); want != hash {
		return nil, "", errors.New("its hash does not match its content (the line was changed)")
	}
	return &rec, hash, nil
}

func lowerHex(s string) string { return string(bytes.ToLower([]byte(s))) }
