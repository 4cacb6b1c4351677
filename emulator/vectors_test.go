package emulator

import (
	"encoding/hex"
	"net/http"
	"testing"

	"khproxy/internal/testutil"
)

// TestSpecVectors checks both signers against the spec §1.2 test vector.
func TestSpecVectors(t *testing.T) {
	const secret, ts, nonce = "EXAMPLESECRET0123456789ABCDEFGHI", "1700000000", "3f9a1c0e5b7d24681ace0bdf13579bdf"
	tests := []struct{ method, path, body, want string }{
		{"GET", "/v1/services?page=2", "", "acaa5f8d039c712064181cc692441fcb20328928aa6a452cf336bead55997f59"},
		{"POST", "/v1/orders", `{"product_id":42,"billing_cycle":"monthly"}`, "6e6ed58b76b760e2c963ea45625bb84adadea0f878679a8117a29aeb7e550831"},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			if got := hex.EncodeToString(sign(secret, tc.method, tc.path, ts, nonce, []byte(tc.body))); got != tc.want {
				t.Errorf("emulator sign: got %s, want %s", got, tc.want)
			}
			if got := testutil.Signature(secret, tc.method, tc.path, ts, nonce, []byte(tc.body)); got != tc.want {
				t.Errorf("test sign: got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestKeyRotationAndLock(t *testing.T) {
	env := newEnv(t, nil)
	if err := env.emu.SetKey(Key{ID: env.key, Secret: "rotated-secret", Scopes: AllScopes()}); err != nil {
		t.Fatal(err)
	}
	resp, body := env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "signature_mismatch")
	if resp, _ := env.do(t, rq{path: "/v1/me", secret: "rotated-secret"}); resp.StatusCode != 200 {
		t.Errorf("new secret: status %d", resp.StatusCode)
	}
	env.emu.SetKey(Key{ID: env.key, Secret: "rotated-secret", Locked: true})
	resp, body = env.do(t, rq{path: "/v1/me", secret: "rotated-secret"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "unknown_or_locked_key")
}

func TestNonceCacheBounded(t *testing.T) {
	env := newEnv(t, nil)
	env.emu.nonces.mu.Lock()
	env.emu.nonces.max = 2
	env.emu.nonces.mu.Unlock()
	mustGet(t, env, "/v1/me")
	mustGet(t, env, "/v1/me")
	resp, body := env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusTooManyRequests, codeRateLimited, "nonce_cache_full")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	env.clock.Advance(nonceTTL)
	mustGet(t, env, "/v1/me") // expired entries make room
}
