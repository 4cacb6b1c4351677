package testutil

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// OrderBody is a valid POST /v1/orders body for the emulator's product 42.
const OrderBody = `{"product_id":42,"billing_cycle":"monthly"}`

// Signature computes a KernelHost request signature (spec §1.2) with code of
// its own, independent of package signer, so that tests can judge the
// signer, the proxy and the emulator against it: hex HMAC-SHA256, keyed by
// secret, over method, path with query, timestamp, nonce and the body's hex
// SHA-256, joined by newlines.
func Signature(secret, method, path, ts, nonce string, body []byte) string {
	msg := fmt.Sprintf("%s\n%s\n%s\n%s\n%x", method, path, ts, nonce, sha256.Sum256(body))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return fmt.Sprintf("%x", m.Sum(nil))
}

// VerifySignature checks the four KH-* headers of a request the way the API
// documents them: each present exactly once, KH-Key equal to key, and
// KH-Signature equal to Signature over path (the request-target after the
// API's base path). It does not judge the timestamp or the nonce.
func VerifySignature(h http.Header, key, secret, method, path string, body []byte) error {
	for _, name := range []string{"KH-Key", "KH-Timestamp", "KH-Nonce", "KH-Signature"} {
		if n := len(h.Values(name)); n != 1 {
			return fmt.Errorf("%s appears %d times", name, n)
		}
	}
	if got := h.Get("KH-Key"); got != key {
		return fmt.Errorf("KH-Key = %q", got)
	}
	want := Signature(secret, method, path, h.Get("KH-Timestamp"), h.Get("KH-Nonce"), body)
	if !hmac.Equal([]byte(want), []byte(h.Get("KH-Signature"))) {
		return fmt.Errorf("signature mismatch over %s %q", method, path)
	}
	return nil
}

// WaitFor polls cond until it holds, failing the test after 5 s with what
// it was waiting for.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Problem checks that resp, with its body already read, is an
// application/problem+json answer with the given status (in the header and
// in the body's "status"), and returns the decoded body for further checks.
func Problem(t testing.TB, resp *http.Response, body []byte, status int) map[string]any {
	t.Helper()
	if got := resp.StatusCode; got != status {
		t.Fatalf("status = %d, want %d (body %s)", got, status, body)
	}
	if got, want := resp.Header.Get("Content-Type"), "application/problem+json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if got, want := p["status"], float64(status); got != want {
		t.Errorf("body status = %v, want %v", got, want)
	}
	return p
}

// Do sends req with client and returns the response with its whole body
// read (and the body closed), failing the test on any error.
func Do(t testing.TB, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// WriteFile writes content to a file named name in dir, readable by its
// owner only, and returns its path, failing the test on any error.
func WriteFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
