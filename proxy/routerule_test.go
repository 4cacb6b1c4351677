package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode"

	"khproxy/apiroute"
	"khproxy/internal/testutil"
)

// appHeaders are what an app's HTTP library sends with a JSON POST to
// khproxy on loopback.
const appHeaders = "Host: 127.0.0.1:8080\r\nUser-Agent: python-requests/2.32.3\r\nAccept: */*\r\n" +
	"Content-Type: application/json\r\nConnection: close\r\n"

// TestRouteSpellingsGetTheirKey sends the spellings of POST /v1/orders and
// POST /v1/services/{id}/actions that an RFC 3986 server reads as those
// routes: each goes out signed with the normalised path and with the
// automatic Idempotency-Key, and the access log names the route.
func TestRouteSpellingsGetTheirKey(t *testing.T) {
	h := newHarness(t, nil)
	for _, tt := range []struct{ target, sent, route string }{
		{"/v1/%6Frders", "/v1/orders", "/v1/orders"},
		{"/v1/%6frders", "/v1/orders", "/v1/orders"},
		{"/v1/services/1/%61ctions", "/v1/services/1/actions", "/v1/services/{id}/actions"},
		{"/v1/services/%31/actions", "/v1/services/1/actions", "/v1/services/{id}/actions"},
		{"/v1/%73ervices/1/actions?x=%61", "/v1/services/1/actions?x=%61", "/v1/services/{id}/actions"},
		{basePath + "/v1/%6F%72%64%65%72%73", "/v1/orders", "/v1/orders"},
		{"http://127.0.0.1:8080/v1/%6Frders?q=", "/v1/orders?q=", "/v1/orders"},
	} {
		t.Run(tt.target, func(t *testing.T) {
			n := accessLines(h)
			a := h.rawOK(t, "POST "+tt.target+" HTTP/1.1\r\n"+appHeaders+"Content-Length: 2\r\n\r\n{}")
			if got := a.RequestURI; got != basePath+tt.sent {
				t.Errorf("sent %q, want %q", got, basePath+tt.sent)
			}
			if a.Header.Get("Idempotency-Key") == "" {
				t.Error("sent without an Idempotency-Key")
			}
			line := nextLogLine(t, h, n)
			if line["route"] != tt.route || line["path"] != tt.sent {
				t.Errorf("logged route %v, path %v; want %s, %s", line["route"], line["path"], tt.route, tt.sent)
			}
			if line["idempotency_key_source"] != "auto" {
				t.Errorf("logged key source %v, want auto", line["idempotency_key_source"])
			}
		})
	}
}

// TestAmbiguousRoutesRefused sends spellings that some servers read as an
// API route while khproxy's route rule does not: each is refused with 400
// and nothing is sent, rather than sent without the route's key.
func TestAmbiguousRoutesRefused(t *testing.T) {
	h := newHarness(t, nil)
	for _, req := range []string{
		"POST /v1//orders",
		"POST /v1/orders/",
		"POST /v1/orders//",
		"POST //v1/orders",
		"POST /V1/orders",
		"POST /v1/Orders",
		"POST /v1/ORDERS?x=1",
		"POST /v1%2Forders",
		"POST /v1/%2Forders",
		"POST /v1/orders;jsessionid=1",
		"POST /v1/orders%20",
		"POST /v1/orders%00.json",
		"POST /v1/%256Frders",
		`POST /v1\orders`,
		"POST /v1/services/1/actions/",
		"POST /v1/services//actions",
		"POST /v1/services/1/Actions",
		"POST /v1/services/1%20/actions",
		"POST /v1/services/1%2F/actions",
		"post /v1/orders",
		"Post /v1/orders",
		"pOST /v1/services/1/actions",
		"get /v1/services/1/credentials",
		"GET /v1/services/1/credentials/",
		"GET /V1/services/1/credentials",
	} {
		t.Run(req, func(t *testing.T) {
			resp, body := h.raw(t, req+" HTTP/1.1\r\n"+appHeaders+"Content-Length: 2\r\n\r\n{}")
			p := assertProblem(t, resp, body, http.StatusBadRequest, "bad_request")
			t.Logf("detail: %s", p["detail"])
		})
	}
	if got := h.up.all(); len(got) != 0 {
		t.Errorf("%d refused requests reached the upstream: %+v", len(got), got)
	}
}

// accessLines counts the proxy's access log lines so far.
func accessLines(h *harness) int {
	return strings.Count(h.logs.String(), `"msg":"request"`)
}

// nextLogLine waits for access log line n+1 (the proxy writes it once the
// answer has gone out) and returns it, decoded.
func nextLogLine(t testing.TB, h *harness, n int) map[string]any {
	t.Helper()
	testutil.WaitFor(t, "the access log line", func() bool { return accessLines(h) > n })
	var m map[string]any
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"request"`) {
			if n == 0 {
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatal(err)
				}
				return m
			}
			n--
		}
	}
	t.Fatal("no access log line")
	return nil
}

// FuzzRouteKeys sends arbitrary methods and request-targets through khproxy
// and checks the one route rule end to end: no request is labelled an
// idempotent route in the access log without going out with its key, and
// nothing goes out that an API reading paths loosely (apiroute.Resembles)
// or methods without regard to case could take for an idempotent route
// without the key. Its seeds run as part of go test.
func FuzzRouteKeys(f *testing.F) {
	for _, seed := range [][2]string{
		{"POST", "/v1/orders"}, {"POST", "/v1/%6Frders"}, {"POST", "/v1/services/1/%61ctions"},
		{"POST", "/v1//orders"}, {"POST", "/v1/orders/"}, {"POST", "/V1/orders"}, {"post", "/v1/orders"},
		{"POST", "/v1%2Forders"}, {"POST", "/v1/orders;a"}, {"POST", "/v1/services/%2e%2e/actions"},
		{"POST", "http://127.0.0.1/v1/%6frders"}, {"POST", basePath + "/v1/orders"}, {"GET", "/v1/orders"},
		{"POST", "/v1/services/a.b/actions?x"}, {"POST", "/v1/services/%7E/actions"}, {"PoSt", "/v1/orders"},
	} {
		f.Add(seed[0], seed[1])
	}
	h := newHarness(f, nil)
	routes := defaultRoutes(f)
	f.Fuzz(func(t *testing.T, method, target string) {
		if method == "" || target == "" || strings.ContainsFunc(method+target, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII
		}) {
			return // not a request line
		}
		before, n := len(h.up.all()), accessLines(h)
		resp, _ := h.raw(t, method+" "+target+" HTTP/1.1\r\n"+appHeaders+"Content-Length: 2\r\n\r\n{}")
		if resp.StatusCode == http.StatusBadRequest && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			return // Go's server refused the request line; khproxy never saw it
		}
		line := nextLogLine(t, h, n)
		sent := h.up.all()[before:]
		if len(sent) > 1 {
			t.Fatalf("%s %s: sent %d times", method, target, len(sent))
		}
		labelled := false
		if route, ok := line["route"].(string); ok && line["method"] == method {
			if p, err := apiroute.ParsePattern(method + " " + route); err == nil {
				_, labelled = apiroute.MatchAny(routes, method, strings.ReplaceAll(p.Path(), "{id}", "1"))
			}
		}
		if len(sent) == 0 {
			if labelled && resp.StatusCode < 400 {
				t.Fatalf("%s %s: labelled %v, answered %d, but nothing was sent", method, target, line["route"], resp.StatusCode)
			}
			return
		}
		a := sent[0]
		rel := strings.TrimPrefix(a.RequestURI, basePath)
		path, _, _ := strings.Cut(rel, "?")
		_, idempotent := apiroute.MatchAny(routes, strings.ToUpper(a.Method), path)
		if tmpl, ok := apiroute.Resembles(path); ok {
			_, idempotent = apiroute.MatchAny(routes, strings.ToUpper(a.Method), strings.ReplaceAll(tmpl, "{id}", "1"))
		}
		if (labelled || idempotent) && a.Header.Get("Idempotency-Key") == "" {
			t.Fatalf("%s %s: sent as %s %s (logged route %v) without an Idempotency-Key", method, target, a.Method, a.RequestURI, line["route"])
		}
		if a.SigErr != nil {
			t.Fatalf("%s %s: signature refused upstream: %v", method, target, a.SigErr)
		}
	})
}
