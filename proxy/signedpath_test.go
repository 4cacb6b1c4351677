package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"khproxy/emulator"
	"khproxy/emulator/emulatortest"
	"khproxy/internal/testutil"
)

// TestSignFullPath runs khproxy in both KH_SIGNED_PATH modes against the
// emulator in both -signed-path modes (spec §9.1): the emulator, not
// khproxy's signer, judges every signature. Matching modes are accepted,
// mismatched ones are refused with 401 signature_mismatch, queries and the
// base path in the client's URL included.
func TestSignFullPath(t *testing.T) {
	targets := []string{"/v1/me", "/v1/services?per_page=5&page=1", emulator.DefaultBasePath + "/v1/products/42"}
	for _, emuMode := range []string{emulator.SignedPathV1, emulator.SignedPathFull} {
		for _, full := range []bool{false, true} {
			name := "emulator " + emuMode + ", khproxy v1"
			if full {
				name = "emulator " + emuMode + ", khproxy full"
			}
			t.Run(name, func(t *testing.T) {
				emu, key, secret := emulatortest.New(t, func(o *emulator.Options) { o.SignedPath = emuMode })
				up := httptest.NewServer(emu)
				t.Cleanup(up.Close)
				u, _ := url.Parse(up.URL + emulator.DefaultBasePath)
				opts := emuProxyOptions(t, u, key, secret)
				opts.SignFullPath = full
				srv, _ := startProxy(t, opts, secret)
				h := &emuHarness{emu: emu, proxy: srv}
				match := full == (emuMode == emulator.SignedPathFull)
				for _, target := range targets {
					code, hdr, body := h.must(t, "GET", target, "", nil)
					if match {
						if code != http.StatusOK {
							t.Errorf("GET %s: %d %s, want 200", target, code, body)
						}
						continue
					}
					p := testutil.Problem(t, &http.Response{StatusCode: code, Header: hdr}, body, http.StatusUnauthorized)
					if p["reason"] != "signature_mismatch" {
						t.Errorf("GET %s: reason %v, want signature_mismatch", target, p["reason"])
					}
				}
				// An order: the automatic Idempotency-Key and the body hash
				// are the same in both modes.
				code, _, body := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
				if match != (code == http.StatusCreated) {
					t.Errorf("POST /v1/orders: %d %s", code, body)
				}
				// Health is unsigned at the API in both modes.
				if code, _, body := h.must(t, "GET", "/v1/health", "", nil); code != http.StatusOK || !strings.Contains(string(body), "ok") {
					t.Errorf("health: %d %s", code, body)
				}
			})
		}
	}
}
