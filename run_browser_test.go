package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/internal/testutil"
	"khproxy/proxy"
)

// chrome is what Chrome 131 sends beside a page's fetch, with the
// placeholders ORIGIN and SITE; Host is added by the caller.
const chrome = "Connection: keep-alive\r\n" +
	"sec-ch-ua-platform: \"Linux\"\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n" +
	"sec-ch-ua: \"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n" +
	"sec-ch-ua-mobile: ?0\r\n" +
	"Accept: */*\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n"

// recordingAPI is an upstream that counts what reaches it and answers 201.
type recordingAPI struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "METHOD request-target"
}

func startRecordingAPI(t testing.TB) *recordingAPI {
	t.Helper()
	a := &recordingAPI{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		a.mu.Lock()
		a.seen = append(a.seen, r.Method+" "+r.RequestURI)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"data":{"id":1006,"status":"pending","root_password":"s3cr3t"}}`)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *recordingAPI) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

// sendRaw writes request to addr on a new connection and reads the answer.
func sendRaw(t testing.TB, addr, request string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestBrowsersRefused runs khproxy as its defaults do and sends it what a
// web page in a browser on the same machine can make the browser send:
// each is refused, logged, counted, and nothing reaches the API. What apps
// send, and what a listed origin or host sends, is served.
func TestBrowsersRefused(t *testing.T) {
	api := startRecordingAPI(t)
	r := startRun(t, "KH_KEY="+testKey, "KH_SECRET="+testSecret, "KH_UPSTREAM="+api.URL+"/cp/kh_reseller_api",
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_SHUTDOWN_DELAY=0s",
		"KH_ALLOWED_ORIGINS=http://localhost:3000", "KH_ALLOWED_HOSTS=khproxy.payments.svc.cluster.local")
	_, port, _ := net.SplitHostPort(r.proxy)
	local := "Host: 127.0.0.1:" + port + "\r\n"
	order := `{"product_id":42,"billing_cycle":"monthly"}`
	post := func(headers string) string {
		return fmt.Sprintf("POST /v1/orders HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s", headers, len(order), order)
	}
	get := func(path, headers string) string { return "GET " + path + " HTTP/1.1\r\n" + headers + "\r\n" }

	refused := []struct {
		name, request string
		status        int
		kind          proxy.Kind
	}{
		{"fetch text/plain POST from a page (no preflight)", post(local + chrome +
			"Content-Type: text/plain;charset=UTF-8\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n" +
			"Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: empty\r\nReferer: https://evil.example/\r\n"),
			403, proxy.KindBrowserRefused},
		{"HTML form POST from a page", post(local + chrome +
			"Content-Type: application/x-www-form-urlencoded\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n" +
			"Sec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\nUpgrade-Insecure-Requests: 1\r\n"),
			403, proxy.KindBrowserRefused},
		{"Origin only (an older browser)", post(local + "Content-Type: text/plain\r\nOrigin: https://evil.example\r\n"),
			403, proxy.KindBrowserRefused},
		{"Origin null (a sandboxed frame)", post(local + chrome + "Content-Type: text/plain\r\nOrigin: null\r\nSec-Fetch-Site: cross-site\r\n"),
			403, proxy.KindBrowserRefused},
		{"img GET from a page (no Origin)", get("/v1/services/1/credentials", local+chrome+
			"Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: image\r\nReferer: https://evil.example/\r\n"),
			403, proxy.KindBrowserRefused},
		{"CORS preflight", "OPTIONS /v1/orders HTTP/1.1\r\n" + local + chrome +
			"Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n" +
			"Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\n\r\n",
			403, proxy.KindBrowserRefused},
		{"CORS preflight from an allowed origin", "OPTIONS /v1/orders HTTP/1.1\r\n" + local + chrome +
			"Origin: http://localhost:3000\r\nAccess-Control-Request-Method: POST\r\nSec-Fetch-Site: same-site\r\n\r\n",
			403, proxy.KindBrowserRefused},
		{"DNS rebinding, with Sec-Fetch headers", get("/v1/services/1/credentials",
			"Host: rebind.attacker.example:"+port+"\r\n"+chrome+"Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\n"),
			403, proxy.KindBrowserRefused},
		{"DNS rebinding from a browser without Sec-Fetch", get("/v1/services/1/credentials",
			"Host: rebind.attacker.example:"+port+"\r\nUser-Agent: Mozilla/5.0 (Macintosh) Safari/605.1.15\r\nAccept: */*\r\n"),
			421, proxy.KindHostRefused},
		{"DNS rebinding POST", post("Host: rebind.attacker.example:" + port + "\r\nContent-Type: text/plain\r\n"),
			421, proxy.KindHostRefused},
		{"DNS rebinding, an address-like name", get("/v1/me", "Host: 127.0.0.1.attacker.example:"+port+"\r\n"),
			421, proxy.KindHostRefused},
		{"absolute form naming another host", "GET http://evil.example/v1/me HTTP/1.1\r\nHost: evil.example\r\n\r\n",
			421, proxy.KindHostRefused},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			before := api.count()
			resp, body := sendRaw(t, r.proxy, tt.request)
			if resp.StatusCode != tt.status || !strings.Contains(body, proxy.TypePrefix+string(tt.kind)) {
				t.Errorf("answer %d %s, want %d %s", resp.StatusCode, body, tt.status, tt.kind)
			}
			if strings.Contains(body, "s3cr3t") || resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("the answer holds the API's or CORS headers: %v %s", resp.Header, body)
			}
			if n := api.count() - before; n != 0 {
				t.Errorf("%d requests reached the API", n)
			}
		})
	}
	testutil.WaitFor(t, "the refusals in the access log", func() bool {
		return strings.Count(r.logs.String(), `"error":"browser_refused`)+strings.Count(r.logs.String(), `"error":"host_refused`) == len(refused)
	})
	m := r.scrape(t)
	for kind, want := range map[proxy.Kind]float64{proxy.KindBrowserRefused: 8, proxy.KindHostRefused: 4} {
		if got := m[`khproxy_errors_total{kind="`+string(kind)+`"}`]; got != want {
			t.Errorf("khproxy_errors_total{kind=%q} = %v, want %v", kind, got, want)
		}
	}

	served := []struct{ name, request string }{
		{"curl", post(local + "User-Agent: curl/8.11.1\r\nAccept: */*\r\nContent-Type: application/json\r\n")},
		{"python requests, Host localhost", post("Host: localhost:" + port + "\r\nUser-Agent: python-requests/2.32.3\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\nContent-Type: application/json\r\n")},
		{"node fetch", post(local + "connection: keep-alive\r\ncontent-type: application/json\r\naccept: */*\r\naccept-language: *\r\nsec-fetch-mode: cors\r\nuser-agent: node\r\naccept-encoding: gzip, deflate\r\n")},
		{"Host [::1]", get("/v1/me", "Host: [::1]:"+port+"\r\n")},
		{"Host localhost. without a port", get("/v1/me", "Host: LOCALHOST.\r\n")},
		{"Host another loopback address", get("/v1/me", "Host: 127.8.9.10:"+port+"\r\n")},
		{"an allowed host", get("/v1/me", "Host: khproxy.payments.svc.cluster.local:"+port+"\r\n")},
		{"an allowed origin", post(local + chrome + "Content-Type: text/plain\r\nOrigin: http://localhost:3000\r\nSec-Fetch-Site: same-site\r\nSec-Fetch-Mode: no-cors\r\n")},
		{"a URL typed into the address bar", get("/v1/products", local+chrome+"Sec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-User: ?1\r\nSec-Fetch-Dest: document\r\n")},
		{"HTTP_PROXY client naming the upstream", "GET " + api.URL + "/cp/kh_reseller_api/v1/me HTTP/1.1\r\nHost: " + strings.TrimPrefix(api.URL, "http://") + "\r\n\r\n"},
	}
	for _, tt := range served {
		t.Run("served/"+tt.name, func(t *testing.T) {
			before := api.count()
			resp, body := sendRaw(t, r.proxy, tt.request)
			if resp.StatusCode != http.StatusCreated || api.count() != before+1 {
				t.Errorf("answer %d %s, %d requests sent; want the API's 201, one sent", resp.StatusCode, body, api.count()-before)
			}
		})
	}

	// Go's net/http client, as an app uses it.
	r.send(t, "POST", "/v1/orders", order, http.StatusCreated)

	var p map[string]any
	_, body := sendRaw(t, r.proxy, refused[0].request)
	if err := json.Unmarshal([]byte(body), &p); err != nil || !strings.Contains(fmt.Sprint(p["detail"]), "https://evil.example") {
		t.Errorf("detail %v does not name the refused origin", p["detail"])
	}
}

// TestUnixSocketSkipsHostCheck: no browser reaches a Unix socket, so any
// Host is served there; a request with a foreign Origin is still refused.
func TestUnixSocketSkipsHostCheck(t *testing.T) {
	api := startRecordingAPI(t)
	path := t.TempDir() + "/khproxy.sock"
	r := startRun(t, "KH_KEY="+testKey, "KH_SECRET="+testSecret, "KH_UPSTREAM="+api.URL+"/cp/kh_reseller_api",
		"KH_LISTEN=unix:"+path, "KH_ADMIN_LISTEN=", "KH_SHUTDOWN_DELAY=0s")
	send := func(headers string) int {
		c, err := net.Dial("unix", r.proxy)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /v1/me HTTP/1.1\r\n"+headers+"\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := send("Host: rebind.attacker.example\r\n"); got != http.StatusCreated {
		t.Errorf("a foreign Host over the socket: %d, want the API's 201", got)
	}
	if got := send("Host: localhost\r\nOrigin: https://evil.example\r\n"); got != http.StatusForbidden {
		t.Errorf("a foreign Origin over the socket: %d, want 403", got)
	}
	if api.count() != 1 {
		t.Errorf("%d requests reached the API, want 1", api.count())
	}
}
