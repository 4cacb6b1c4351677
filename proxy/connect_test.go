package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

// TestConnectIsRefusedWithTheReason checks the raw answer to CONNECT: a 405
// whose reason phrase, Proxy-Status header and problem body say what to do,
// after which the connection is closed. Nothing reaches the upstream.
func TestConnectIsRefusedWithTheReason(t *testing.T) {
	h := newHarness(t, nil)
	addr := h.proxy.Listener.Addr().String()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "CONNECT www.kernelhost.com:443 HTTP/1.1\r\nHost: www.kernelhost.com:443\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := "405 khproxy is not an HTTPS proxy: send plain HTTP to http://" + addr + "/v1/... instead"
	if resp.Status != want {
		t.Errorf("status line %q, want %q", resp.Status, want)
	}
	p := assertProblem(t, resp, body, http.StatusMethodNotAllowed, "method_not_allowed")
	detail, _ := p["detail"].(string)
	if !strings.Contains(detail, "HTTPS_PROXY") || !strings.Contains(detail, "http://"+addr+"/v1/") {
		t.Errorf("detail %q does not say what to do", detail)
	}
	if got, want := resp.Header.Get("Proxy-Status"), "khproxy; error=http_request_denied; details="+strconv.Quote(detail); got != want {
		t.Errorf("Proxy-Status = %q, want %q", got, want)
	}
	if got := resp.Header.Get("Allow"); !strings.Contains(got, "GET") || strings.Contains(got, "CONNECT") {
		t.Errorf("Allow = %q", got)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after the answer: %v, want the connection closed", err)
	}
	if n := len(h.up.all()); n != 0 {
		t.Errorf("%d requests reached the upstream", n)
	}
	testutil.WaitFor(t, "the access-log line of the CONNECT", func() bool {
		return strings.Contains(h.logs.String(), `"method":"CONNECT","route":"other","path":"","status":405`)
	})
}

// TestConnectWhatClientsShow points real clients' HTTPS proxy at khproxy and
// checks what they print. Clients that are not installed are skipped.
func TestConnectWhatClientsShow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	proxyURL := h.proxy.URL
	reason := "khproxy is not an HTTPS proxy: send plain HTTP to " + proxyURL + "/v1/... instead"
	const target = "https://www.kernelhost.com/cp/kh_reseller_api/v1/products"
	pyURLlib := `import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"https": sys.argv[1]}))
try:
    opener.open(sys.argv[2], timeout=10)
except Exception as e:
    print(e)
`
	pyRequests := `import sys, requests
try:
    requests.get(sys.argv[2], proxies={"https": sys.argv[1]}, timeout=10)
except Exception as e:
    print(e)
`
	pyHTTPX := `import sys, httpx
try:
    httpx.get(sys.argv[2], proxy=sys.argv[1], timeout=10)
except Exception as e:
    print(e)
`
	tests := []struct {
		name  string
		argv  []string
		probe []string // must succeed, or the client is skipped
		needs string   // what is missing when the probe fails
		want  string   // in the combined output
	}{
		// curl prints only the status code without -v; with it, the status line.
		{name: "curl", argv: []string{"curl", "-sS", "-x", proxyURL, target}, want: "CONNECT tunnel failed, response 405"},
		{name: "curl -v", argv: []string{"curl", "-sv", "-x", proxyURL, target}, want: "< HTTP/1.1 405 " + reason},
		{name: "python urllib", argv: []string{"python3", "-c", pyURLlib, proxyURL, target}, want: "Tunnel connection failed: 405 " + reason},
		{name: "python requests", argv: []string{"python3", "-c", pyRequests, proxyURL, target},
			probe: []string{"python3", "-c", "import requests"}, needs: "the Python module requests", want: "Tunnel connection failed: 405 " + reason},
		{name: "python httpx", argv: []string{"python3", "-c", pyHTTPX, proxyURL, target},
			probe: []string{"python3", "-c", "import httpx"}, needs: "the Python module httpx", want: "405 " + reason},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := exec.LookPath(tt.argv[0]); err != nil {
				t.Skipf("%s is not installed", tt.argv[0])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if tt.probe != nil {
				if err := exec.CommandContext(ctx, tt.probe[0], tt.probe[1:]...).Run(); err != nil {
					t.Skipf("%s is not installed", tt.needs)
				}
			}
			cmd := exec.CommandContext(ctx, tt.argv[0], tt.argv[1:]...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no proxy settings from the environment
			out, _ := cmd.CombinedOutput()
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

// TestConnectOnAUnixSocketNamesNoPath: on a Unix socket there is no URL to
// point to, and the socket's path stays out of the answer.
func TestConnectOnAUnixSocketNamesNoPath(t *testing.T) {
	h := newHarness(t, nil)
	path := filepath.Join(t.TempDir(), "khproxy.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h.proxy.Config.Handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "CONNECT www.kernelhost.com:443 HTTP/1.1\r\nHost: www.kernelhost.com:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "405 khproxy is not an HTTPS proxy: send plain HTTP to khproxy's Unix socket/v1/... instead"; resp.Status != want {
		t.Errorf("status line %q, want %q", resp.Status, want)
	}
	if strings.Contains(resp.Status+resp.Header.Get("Proxy-Status"), path) {
		t.Error("the answer names the socket's path")
	}
}
