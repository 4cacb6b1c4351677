package emulator

import (
	"khproxy/emulator/apiauth"
	"net/http"
	"testing"
)

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
	env.emu.auth.SetNonceLimit(2)
	mustGet(t, env, "/v1/me")
	mustGet(t, env, "/v1/me")
	resp, body := env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusTooManyRequests, codeRateLimited, "nonce_cache_full")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	env.clock.Advance(apiauth.NonceTTL)
	mustGet(t, env, "/v1/me") // expired entries make room
}
