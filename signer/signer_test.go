package signer_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"khproxy/internal/testutil"
	"khproxy/signer"
)

const (
	vecSecret = "EXAMPLESECRET0123456789ABCDEFGHI"
	vecTS     = "1700000000"
	vecNonce  = "3f9a1c0e5b7d24681ace0bdf13579bdf"
)

// The first two vectors are spec §1.2's; the rest were computed with the
// quickstart's own recipe:
//
//	BH=$(openssl dgst -sha256 -hex < body | awk '{print $2}')
//	printf '%s\n%s\n%s\n%s\n%s' "$M" "$P" "$TS" "$NONCE" "$BH" | openssl dgst -sha256 -hmac "$SECRET" -hex
var vectors = []struct {
	name, method, path string
	body               []byte
	bodyHash, sig      string
}{
	{"spec GET with query", "GET", "/v1/services?page=2", nil,
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"acaa5f8d039c712064181cc692441fcb20328928aa6a452cf336bead55997f59"},
	{"spec POST order", "POST", "/v1/orders", []byte(`{"product_id":42,"billing_cycle":"monthly"}`),
		"05e611ac424bf9c68c15fad3de79181d0b774445e62dfaf1b2863e50b16b5a59",
		"6e6ed58b76b760e2c963ea45625bb84adadea0f878679a8117a29aeb7e550831"},
	{"query encodings unsorted repeated", "GET", "/v1/products?q=a%20b&sort=z&sort=a&x=1%2F2&y=c+d&z=%3D", nil,
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"b1a89fe8aa77cc7748785f01f90263003339724d7feecaa2372fdfdec71966f4"},
	{"percent-encoded path", "GET", "/v1/caf%C3%A9/a%2Fb", nil,
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"b1eaf12cc094e087e33725e47eb646fd8dfdc3360b2d915b9fcd102b30f2f49c"},
	{"binary body", "PUT", "/v1/webhooks", []byte("\x00\x01\x02\xff\xfe\r\n"),
		"3ef507a309a311c86fa6cb454ce14af5d77b5e6b84c0337004611dd3e8e543bc",
		"f1f9fa762f079e34fcdd656a35bb87ec501a215aaa2b8d18d5d8e38b3b3739a5"},
	{"unicode body", "POST", "/v1/services/7/actions", []byte(`{"name":"Grüße 世界"}`),
		"24235168c47eaafeb36391a7c88b76d99a6cb2d416479da90411e2cdfe5adfe0",
		"dfe2d48770bd2ea7db76ad313d2a3b711d5f85ab8eea2f1ff46cda7e96d0fca8"},
	{"DELETE empty body", "DELETE", "/v1/x", []byte{},
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"0210dcd9fa7bc8fac91093176cbc1da34443c64fb417225369bbf8135cf2d77e"},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			if got := signer.BodyHash(v.body); got != v.bodyHash {
				t.Errorf("BodyHash = %s, want %s", got, v.bodyHash)
			}
			if got := signer.Signature([]byte(vecSecret), v.method, v.path, vecTS, vecNonce, v.bodyHash); got != v.sig {
				t.Errorf("Signature = %s, want %s", got, v.sig)
			}
		})
	}
}

func TestSignUsesVectorInputs(t *testing.T) {
	nonce, _ := hex.DecodeString(vecNonce)
	s := &signer.Signer{Key: "kh_live_TESTKEY", Secret: signer.StaticSecret(vecSecret), Rand: bytes.NewReader(nonce)}
	got, err := s.Sign("POST", "/v1/orders", vectors[1].bodyHash, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := signer.Headers{Key: "kh_live_TESTKEY", Timestamp: vecTS, Nonce: vecNonce, Signature: vectors[1].sig}
	if got != want {
		t.Errorf("Sign = %+v, want %+v", got, want)
	}
}

func TestSignFreshNonces(t *testing.T) {
	s := &signer.Signer{Key: "k", Secret: signer.StaticSecret("s")}
	nonceRE := regexp.MustCompile(`^[0-9a-f]{32}$`)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			h, err := s.Sign("GET", "/v1/me", signer.EmptyBodyHash, time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			if !nonceRE.MatchString(h.Nonce) {
				t.Errorf("nonce %q is not 32 lowercase hex characters", h.Nonce)
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[h.Nonce] {
				t.Errorf("nonce %s drawn twice", h.Nonce)
			}
			seen[h.Nonce] = true
		})
	}
	wg.Wait()
}

func TestSignErrors(t *testing.T) {
	tests := []struct {
		name string
		s    *signer.Signer
	}{
		{"no secret source", &signer.Signer{Key: "k"}},
		{"empty static secret", &signer.Signer{Key: "k", Secret: signer.StaticSecret("")}},
		{"nonce source fails", &signer.Signer{Key: "k", Secret: signer.StaticSecret("s"), Rand: strings.NewReader("short")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.s.Sign("GET", "/v1/me", signer.EmptyBodyHash, time.Now()); err == nil {
				t.Error("Sign succeeded, want an error")
			}
		})
	}
}

func TestApplyReplacesEverySpelling(t *testing.T) {
	h := http.Header{}
	h.Add("Kh-Key", "spoofed")
	h["kh-nonce"] = []string{"a", "b"}
	h["KH-Signature"] = []string{"x"}
	h.Set("Content-Type", "application/json")
	signer.Headers{Key: "K", Timestamp: "T", Nonce: "N", Signature: "S"}.Apply(h)
	want := map[string][]string{
		"KH-Key": {"K"}, "KH-Timestamp": {"T"}, "KH-Nonce": {"N"}, "KH-Signature": {"S"},
		"Content-Type": {"application/json"},
	}
	if len(h) != len(want) {
		t.Errorf("header has %d names, want %d: %v", len(h), len(want), h)
	}
	for k, v := range want {
		if got := h[k]; len(got) != 1 || got[0] != v[0] {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// TestFileSecret runs in a synctest bubble: the check interval passes on
// the bubble's clock, at once, instead of three real seconds.
func TestFileSecret(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "secret")
		write := func(s string) {
			t.Helper()
			// Write then rename, as Kubernetes swaps mounted secrets atomically.
			tmp := filepath.Join(dir, "tmp")
			if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}
		write("first-secret\n")
		fs, err := signer.NewFileSecret(path)
		if err != nil {
			t.Fatal(err)
		}
		var changes []string
		fs.OnChange = func(err error) { changes = append(changes, fmt.Sprint(err)) }
		got, _ := fs.Secret()
		if string(got) != "first-secret" {
			t.Errorf("Secret = %q, want first-secret (trailing newline dropped)", got)
		}

		write("second-secret\r\n")
		time.Sleep(signer.DefaultCheckEvery + 50*time.Millisecond)
		got, _ = fs.Secret()
		if string(got) != "second-secret" {
			t.Errorf("after rotation Secret = %q, want second-secret", got)
		}

		write("bad secret")
		time.Sleep(signer.DefaultCheckEvery + 50*time.Millisecond)
		got, err = fs.Secret()
		if err != nil || string(got) != "second-secret" {
			t.Errorf("after a bad rotation Secret = %q, %v; want the last good secret", got, err)
		}
		if err := fs.Err(); err == nil || strings.Contains(err.Error(), "bad secret") {
			t.Errorf("Err = %v, want an error that does not quote the secret", err)
		}
		time.Sleep(signer.DefaultCheckEvery + 50*time.Millisecond)
		fs.Secret() // still bad: no second notice
		if len(changes) != 2 || changes[0] != "<nil>" || !strings.Contains(changes[1], "white space") {
			t.Errorf("OnChange calls = %q, want one reload then one error", changes)
		}
	})
}

func TestNewFileSecretErrors(t *testing.T) {
	dir := t.TempDir()
	tests := map[string]string{"empty": "", "only newline": "\n", "inner space": "a b", "control": "a\x01b", "invalid utf8": "\xff"}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := signer.NewFileSecret(path); err == nil {
				t.Error("NewFileSecret succeeded, want an error")
			}
		})
	}
	if _, err := signer.NewFileSecret(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want os.ErrNotExist", err)
	}
}

func FuzzSignature(f *testing.F) {
	for _, v := range vectors {
		f.Add(vecSecret, v.method, v.path, vecTS, vecNonce, v.body)
	}
	f.Fuzz(func(t *testing.T, secret, method, path, ts, nonce string, body []byte) {
		got := signer.Signature([]byte(secret), method, path, ts, nonce, signer.BodyHash(body))
		if want := testutil.Signature(secret, method, path, ts, nonce, body); got != want {
			t.Errorf("Signature = %s, reference = %s", got, want)
		}
	})
}

func ExampleSigner_Sign() {
	s := &signer.Signer{
		Key:    "kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
		Secret: signer.StaticSecret("EXAMPLESECRET0123456789ABCDEFGHI"),
		// A fixed nonce for a reproducible example; leave Rand nil in real use.
		Rand: bytes.NewReader([]byte("\x3f\x9a\x1c\x0e\x5b\x7d\x24\x68\x1a\xce\x0b\xdf\x13\x57\x9b\xdf")),
	}
	h, err := s.Sign("GET", "/v1/services?page=2", signer.BodyHash(nil), time.Unix(1700000000, 0))
	if err != nil {
		fmt.Println(err)
		return
	}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:8080/v1/services?page=2", nil)
	h.Apply(req.Header)
	fmt.Println(req.Header["KH-Timestamp"][0])
	fmt.Println(req.Header["KH-Nonce"][0])
	fmt.Println(req.Header["KH-Signature"][0])
	// Output:
	// 1700000000
	// 3f9a1c0e5b7d24681ace0bdf13579bdf
	// acaa5f8d039c712064181cc692441fcb20328928aa6a452cf336bead55997f59
}

// TestSignatureAcrossSecrets signs with secrets that change between calls,
// from several goroutines, as after a rotation or with two signers in one
// process: each signature must be the one of its own secret.
func TestSignatureAcrossSecrets(t *testing.T) {
	secrets := []string{"first-secret", "second-secret-longer-than-the-first", "3"}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				secret := secrets[(g+i)%len(secrets)]
				path := fmt.Sprintf("/v1/orders?g=%d&i=%d", g, i)
				got := signer.Signature([]byte(secret), "POST", path, vecTS, vecNonce, signer.BodyHash([]byte(path)))
				if want := testutil.Signature(secret, "POST", path, vecTS, vecNonce, []byte(path)); got != want {
					t.Errorf("secret %q, %s: signature %s, want %s", secret, path, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestBodyHasher(t *testing.T) {
	var h signer.BodyHasher
	if got := h.Sum(); got != signer.EmptyBodyHash {
		t.Errorf("zero value: Sum = %s, want EmptyBodyHash", got)
	}
	for _, v := range vectors {
		h.Reset()
		// In uneven pieces, as a body arrives from a socket.
		for rest := v.body; len(rest) > 0; {
			n := min(len(rest), 1+len(rest)/3)
			h.Write(rest[:n])
			rest = rest[n:]
		}
		if got := h.Sum(); got != v.bodyHash {
			t.Errorf("%s: Sum = %s, want %s", v.name, got, v.bodyHash)
		}
	}
}

// TestFileSecretReread: Reread reads the file at once, within the check
// interval that Secret keeps to, even when a rewrite in place left the
// file's size and time as they were; Generation counts distinct secrets.
func TestFileSecretReread(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("first-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, err := signer.NewFileSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	fs.OnChange = func(err error) { changes = append(changes, fmt.Sprint(err)) }
	if g := fs.Generation(); g != 1 {
		t.Errorf("Generation after NewFileSecret = %d, want 1", g)
	}
	st, _ := os.Stat(path)
	// Same size, same mtime: only the content tells.
	if err := os.WriteFile(path, []byte("secnd-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if got, _ := fs.Secret(); string(got) != "first-secret" {
		t.Fatalf("Secret within the check interval = %q, want the cached first-secret", got)
	}
	gen, err := fs.Reread()
	if err != nil || gen != 2 {
		t.Errorf("Reread = %d, %v; want 2, nil", gen, err)
	}
	if got, _ := fs.Secret(); string(got) != "secnd-secret" {
		t.Errorf("Secret after Reread = %q, want secnd-secret", got)
	}
	if gen, err := fs.Reread(); err != nil || gen != 2 {
		t.Errorf("Reread of the same content = %d, %v; want 2, nil", gen, err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if gen, err := fs.Reread(); err == nil || gen != 2 {
		t.Errorf("Reread of an empty file = %d, %v; want 2 and an error", gen, err)
	}
	if got, _ := fs.Secret(); string(got) != "secnd-secret" {
		t.Errorf("Secret after a failed Reread = %q, want the last good secnd-secret", got)
	}
	if len(changes) != 2 || changes[0] != "<nil>" || !strings.Contains(changes[1], "empty") {
		t.Errorf("OnChange calls = %q, want one change then one error", changes)
	}
}
