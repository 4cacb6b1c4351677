package emulator

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"khproxy/emulator/apiauth"
	"khproxy/internal/testutil"
)

var ulidPattern = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)

func TestHealthUnsigned(t *testing.T) {
	env := newEnv(t, nil)
	resp, body := env.do(t, rq{path: "/v1/health", unsigned: true})
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("status: got %d, want %d", got, want)
	}
	if got := decode(t, body)["status"]; got != "ok" {
		t.Errorf("status field: got %v, want ok", got)
	}
	if id := resp.Header.Get("X-Request-Id"); !ulidPattern.MatchString(id) {
		t.Errorf("X-Request-Id %q is not a ULID", id)
	}
}

func TestAuthFailures(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.Keys = append(o.Keys, Key{ID: padKey("LOCKED"), Secret: "s3cret", Locked: true, Scopes: AllScopes()})
	})
	now := env.clock.Now().Unix()
	del := func(name string) func(http.Header) { return func(h http.Header) { h.Del(name) } }
	set := func(name, v string) func(http.Header) { return func(h http.Header) { h.Set(name, v) } }
	tests := []struct {
		name   string
		r      rq
		reason string
	}{
		{"no headers", rq{unsigned: true}, "missing_headers"},
		{"missing key", rq{mutate: del(HeaderKey)}, "missing_headers"},
		{"missing timestamp", rq{mutate: del(HeaderTimestamp)}, "missing_headers"},
		{"missing nonce", rq{mutate: del(HeaderNonce)}, "missing_headers"},
		{"missing signature", rq{mutate: del(HeaderSignature)}, "missing_headers"},
		{"lowercase key", rq{key: "kh_live_abcdefghijklmnopqrstuvwxyz012345"}, "bad_key"},
		{"short key", rq{key: "kh_live_ABC"}, "bad_key"},
		{"ms timestamp", rq{ts: now * 1000}, "bad_timestamp"},
		{"text timestamp", rq{mutate: set(HeaderTimestamp, "17000000xx")}, "bad_timestamp"},
		{"short nonce", rq{nonce: "abc"}, "bad_nonce"},
		{"padded nonce", rq{nonce: "AAAAAAAAAAAAAAAAAAAAAA=="}, "bad_nonce"},
		{"uppercase signature", rq{mutate: func(h http.Header) { h.Set(HeaderSignature, strings.ToUpper(h.Get(HeaderSignature))) }}, "bad_signature"},
		{"short signature", rq{mutate: set(HeaderSignature, "abcd")}, "bad_signature"},
		{"301 s behind", rq{ts: now - 301}, "timestamp_out_of_window"},
		{"301 s ahead", rq{ts: now + 301}, "timestamp_out_of_window"},
		{"unknown key", rq{key: padKey("UNKNOWN")}, "unknown_or_locked_key"},
		{"locked key", rq{key: padKey("LOCKED"), secret: "s3cret"}, "unknown_or_locked_key"},
		{"wrong secret", rq{secret: "not-the-secret"}, "signature_mismatch"},
		{"other path signed", rq{signPath: "/v1/me?x=1"}, "signature_mismatch"},
		{"prefix signed", rq{signPath: DefaultBasePath + "/v1/me"}, "signature_mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.path = "/v1/me"
			resp, body := env.do(t, tc.r)
			wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, tc.reason)
		})
	}
	t.Run("window edges accepted", func(t *testing.T) {
		for _, ts := range []int64{now - 300, now + 300} {
			resp, body := env.do(t, rq{path: "/v1/me", ts: ts})
			if resp.StatusCode != http.StatusOK {
				t.Errorf("ts %+d: status %d, body %s", ts-now, resp.StatusCode, body)
			}
		}
	})
	t.Run("tampered body", func(t *testing.T) {
		r := rq{method: "PUT", path: "/v1/webhooks", body: `{"url":null}`}
		h := env.signHeaders(t, r)
		r.body = `{"url":""}`
		r.mutate = func(hh http.Header) {
			for k, v := range h {
				hh[k] = v
			}
		}
		resp, body := env.do(t, r)
		wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "signature_mismatch")
	})
	t.Run("replay", func(t *testing.T) {
		r := rq{path: "/v1/me"}
		h := env.signHeaders(t, r)
		r.unsigned = true
		r.mutate = func(hh http.Header) {
			for k, v := range h {
				hh[k] = v
			}
		}
		if resp, body := env.do(t, r); resp.StatusCode != http.StatusOK {
			t.Fatalf("first: status %d, body %s", resp.StatusCode, body)
		}
		resp, body := env.do(t, r)
		wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "replay_detected")
		// After 600 s the nonce may be used again (re-signed with a fresh timestamp).
		env.clock.Advance(apiauth.NonceTTL)
		if resp, body := env.do(t, rq{path: "/v1/me", nonce: h.Get(HeaderNonce)}); resp.StatusCode != http.StatusOK {
			t.Fatalf("after TTL: status %d, body %s", resp.StatusCode, body)
		}
	})
}

func TestBadSignatureDoesNotBurnNonce(t *testing.T) {
	env := newEnv(t, nil)
	nonce := newNonce(t)
	resp, body := env.do(t, rq{path: "/v1/me", nonce: nonce, secret: "wrong"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "signature_mismatch")
	if resp, body := env.do(t, rq{path: "/v1/me", nonce: nonce}); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.StatusCode, body)
	}
}

func TestClockOffset(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Faults.ClockOffset = 10 * time.Minute })
	resp, body := env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "timestamp_out_of_window")
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		t.Fatalf("Date: %v", err)
	}
	if got, want := date.Sub(env.clock.Now()), 10*time.Minute; got != want {
		t.Errorf("Date offset: got %v, want %v", got, want)
	}
	// A client that adopts the server clock from Date succeeds.
	if resp, body := env.do(t, rq{path: "/v1/me", ts: date.Unix()}); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.StatusCode, body)
	}
	// Negative offsets too, changed at runtime.
	if err := env.emu.SetFaults(Faults{ClockOffset: -6 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	resp, body = env.do(t, rq{path: "/v1/me"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "timestamp_out_of_window")
}

func TestSignedPathFidelity(t *testing.T) {
	env := newEnv(t, nil)
	raw := "/v1/services?z=2&q=a%20b+c&path=x%2Fy&a=1&z=1&page=1"
	resp, body := env.do(t, rq{path: raw})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("raw-signed: status %d, body %s", resp.StatusCode, body)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	reencoded := u.Path + "?" + u.Query().Encode() // sorted, + for spaces, %2F kept
	if reencoded == raw {
		t.Fatalf("re-encoding did not change the query: %s", reencoded)
	}
	resp, body = env.do(t, rq{path: raw, signPath: reencoded})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "signature_mismatch")
	// Decoded path in the signature must not match either.
	resp, body = env.do(t, rq{path: raw, signPath: "/v1/services?z=2&q=a b c&path=x/y&a=1&z=1&page=1"})
	wantProblem(t, resp, body, http.StatusUnauthorized, codeAuth, "signature_mismatch")
}

func TestXRequestIDEverywhere(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.Keys = append(o.Keys, Key{ID: padKey("READONLY"), Secret: "ro", Scopes: []string{ScopeReadProducts}})
	})
	tests := []struct {
		name   string
		r      rq
		status int
	}{
		{"health", rq{path: "/v1/health", unsigned: true}, 200},
		{"me", rq{path: "/v1/me"}, 200},
		{"401", rq{path: "/v1/me", unsigned: true}, 401},
		{"403", rq{path: "/v1/billing/balance", key: padKey("READONLY"), secret: "ro"}, 403},
		{"404 route", rq{path: "/v1/nope"}, 404},
		{"404 id", rq{path: "/v1/orders/999"}, 404},
		{"405", rq{method: "DELETE", path: "/v1/webhooks"}, 405},
		{"pdf 404", rq{path: "/v1/billing/invoices/1/pdf"}, 404},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := env.do(t, tc.r)
			if resp.StatusCode != tc.status {
				t.Fatalf("status: got %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			id := resp.Header.Get("X-Request-Id")
			if !ulidPattern.MatchString(id) || seen[id] {
				t.Errorf("X-Request-Id %q missing, malformed or repeated", id)
			}
			seen[id] = true
			if resp.Header.Get("Date") == "" {
				t.Error("no Date header")
			}
			if tc.status >= 400 {
				if got := decode(t, body)["request_id"]; got != id {
					t.Errorf("request_id: got %v, want %v", got, id)
				}
			}
		})
	}
}

// scopeCase is one request and the status a key's scopes allow.
type scopeCase struct {
	method, path, body, idem string
	status                   int
}

// checkScopes sends each case as key k; a 403 must be missing_scope.
func checkScopes(t *testing.T, env *testEnv, k Key, cases []scopeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, body := env.do(t, rq{method: tc.method, path: tc.path, body: tc.body, idem: tc.idem, key: k.ID, secret: k.Secret})
			if tc.status == 403 {
				wantProblem(t, resp, body, 403, codeForbidden, "missing_scope")
				return
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status: got %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
		})
	}
}

func TestScopes(t *testing.T) {
	ro := Key{ID: padKey("R"), Secret: "ro-secret", Scopes: []string{ScopeReadProducts}}
	env := newEnv(t, func(o *Options) { o.Keys = append(o.Keys, ro) })
	checkScopes(t, env, ro, []scopeCase{
		{"GET", "/v1/products", "", "", 200},
		{"GET", "/v1/me", "", "", 200},
		{"POST", "/v1/orders", testutil.OrderBody, "k1", 403},
		{"GET", "/v1/services", "", "", 403},
		{"GET", "/v1/billing/balance", "", "", 403},
		{"PUT", "/v1/webhooks", `{"url":null}`, "", 403},
		{"GET", "/v1/webhooks", "", "", 403},
	})
	if got := env.emu.OrderCount(); got != 0 {
		t.Errorf("orders: got %d, want 0", got)
	}
}

func TestRoutingErrors(t *testing.T) {
	env := newEnv(t, nil)
	resp, body := env.do(t, rq{path: "/v1/products/abc"})
	wantProblem(t, resp, body, 404, codeNotFound, "")
	resp, body = env.do(t, rq{method: "POST", path: "/v1/products", body: "{}"})
	wantProblem(t, resp, body, 405, codeMethodNotAllowed, "")
	if got, want := resp.Header.Get("Allow"), "GET"; got != want {
		t.Errorf("Allow: got %q, want %q", got, want)
	}
	resp, body = env.do(t, rq{method: "DELETE", path: "/v1/webhooks"})
	wantProblem(t, resp, body, 405, codeMethodNotAllowed, "")
	if got, want := resp.Header.Get("Allow"), "GET, PUT"; got != want {
		t.Errorf("Allow: got %q, want %q", got, want)
	}
	// Outside the base path: 404 without auth.
	r, err := http.Get(env.srv.URL + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if got, want := r.StatusCode, 404; got != want {
		t.Errorf("outside base: got %d, want %d", got, want)
	}
}

func TestTenantIsolation(t *testing.T) {
	other := Key{ID: padKey("OTHER"), Secret: "other", Scopes: AllScopes(), Account: "acct_other"}
	env := newEnv(t, func(o *Options) { o.Keys = append(o.Keys, other) })
	ord := env.order(t, "iso-1")
	id := jsonID(ord["id"])
	sid := jsonID(ord["service_id"])
	iid := jsonID(ord["invoice_id"])
	for _, p := range []string{"/v1/orders/" + id, "/v1/services/" + sid, "/v1/services/" + sid + "/credentials", "/v1/billing/invoices/" + iid + "/pdf"} {
		resp, body := env.do(t, rq{path: p, key: other.ID, secret: other.Secret})
		wantProblem(t, resp, body, 404, codeNotFound, "")
		if resp, _ := env.do(t, rq{path: p}); resp.StatusCode != 200 {
			t.Errorf("%s for owner: status %d", p, resp.StatusCode)
		}
	}
	resp, body := env.do(t, rq{method: "POST", path: "/v1/services/" + sid + "/actions", body: `{"action":"stop"}`, idem: "x", key: other.ID, secret: other.Secret})
	wantProblem(t, resp, body, 404, codeNotFound, "")
}

func jsonID(v any) string {
	f, _ := v.(float64)
	return strconv.FormatInt(int64(f), 10)
}

// padKey builds a well-formed key id from a short uppercase name.
func padKey(name string) string {
	return "kh_live_" + name + strings.Repeat("0", 32-len(name))
}
