package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestClientIdempotencyKeyChecked(t *testing.T) {
	h := newHarness(t, nil)
	for _, key := range []string{
		`a b"<script>`,
		strings.Repeat("a", 81),
		strings.Repeat("k", 10000),
		"",
		"ключ",
		"a/b",
		"a:b",
		"tab\tinside",
	} {
		t.Run(fmt.Sprintf("%.20q", key), func(t *testing.T) {
			req := "POST /v1/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\nIdempotency-Key: " + key + "\r\n\r\n{}"
			resp, body := h.raw(t, req)
			p := assertProblem(t, resp, body, http.StatusBadRequest, "bad_request")
			detail := fmt.Sprint(p["detail"])
			if !strings.Contains(detail, "Idempotency-Key") || !strings.Contains(detail, "^[A-Za-z0-9_.-]{1,80}$") {
				t.Errorf("detail %q does not name the header and the pattern", detail)
			}
			if got := resp.Header.Get("Idempotency-Key"); got != "" {
				t.Errorf("the refused key was echoed: %q", got)
			}
			if key != "" && strings.Contains(string(body), key) {
				t.Error("the refused key was echoed in the body")
			}
		})
	}
	if n := len(h.up.all()); n != 0 {
		t.Errorf("%d requests with a refused key reached the upstream", n)
	}
	for _, key := range []string{strings.Repeat("a", 80), "My.Key_-01", "0"} {
		resp, _ := h.do(t, "POST", "/v1/orders", strings.NewReader("{}"), http.Header{"Idempotency-Key": {key}})
		if resp.StatusCode != http.StatusOK || h.up.last(t).Header.Get("Idempotency-Key") != key {
			t.Errorf("key %q: status %d, sent %q", key, resp.StatusCode, h.up.last(t).Header.Get("Idempotency-Key"))
		}
	}
}
