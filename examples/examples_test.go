// Package examples_test runs the client examples in this directory against a
// real `khproxy demo`: each one lists products, places an order with its own
// Idempotency-Key, retries it, reads it back, downloads the invoice PDF and
// shows a problem+json error. An example whose interpreter is missing is
// skipped with a message saying what to install.
package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

// example is one client example and what it needs to run.
type example struct {
	name  string
	argv  []string // relative paths are relative to this directory
	needs []string // programs on PATH
	probe []string // a command that must succeed, or the example is skipped
	why   string   // what to install when the probe fails
}

var examples = []example{
	{name: "python", argv: []string{"python3", "python/example.py"}, needs: []string{"python3"}},
	{name: "node", argv: []string{"node", "node/example.mjs"}, needs: []string{"node"},
		probe: []string{"node", "-e", `process.exit(typeof fetch === "function" ? 0 : 1)`},
		why:   "node has no built-in fetch: Node 18 or later is needed"},
	{name: "php", argv: []string{"php", "php/example.php"}, needs: []string{"php"},
		probe: []string{"php", "-r", `exit(function_exists("curl_init") ? 0 : 1);`},
		why:   "php has no curl extension: apt-get install php-curl"},
	{name: "curl", argv: []string{"bash", "curl/example.sh"}, needs: []string{"bash", "curl", "jq"}},
}

// command returns the example's command with absolute paths, or skips t
// with the reason when the example cannot run here.
func (ex example) command(t *testing.T, ctx context.Context) *exec.Cmd {
	t.Helper()
	for _, prog := range ex.needs {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s example skipped: %s is not installed (on Debian: apt-get install %s)", ex.name, prog, debianPackage(prog))
		}
	}
	if ex.probe != nil {
		if err := exec.CommandContext(ctx, ex.probe[0], ex.probe[1:]...).Run(); err != nil {
			t.Skipf("%s example skipped: %s", ex.name, ex.why)
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string(nil), ex.argv[1:]...)
	args[0] = filepath.Join(dir, args[0])
	return exec.CommandContext(ctx, ex.argv[0], args...)
}

func debianPackage(prog string) string {
	switch prog {
	case "python3":
		return "python3"
	case "node":
		return "nodejs"
	case "php":
		return "php-cli php-curl"
	}
	return prog
}

// The lines every example prints, in order, whatever its language.
var wantLines = []*regexp.Regexp{
	regexp.MustCompile(`^1\. products: [1-9][0-9]* listed; ordering 42 "KVM Root Server M" \(9\.99 EUR monthly\)$`),
	regexp.MustCompile(`^2\. order placed: 201, order ([0-9]+), Idempotency-Key (example-[0-9a-f]{32})$`),
	regexp.MustCompile(`^3\. same request again: 201, order ([0-9]+), Idempotent-Replayed: true \(no second order\)$`),
	regexp.MustCompile(`^4\. order read back from /v1/orders/([0-9]+): ([0-9]+) status paid, invoice ([0-9]+)$`),
	regexp.MustCompile(`^5\. invoice PDF: [1-9][0-9]* bytes saved to (\S+)$`),
	regexp.MustCompile(`^6\. problem\+json: 409 idempotency_conflict \(reason body_mismatch\): \S.*$`),
	regexp.MustCompile(`^ok$`),
}

// TestExamples builds khproxy, starts `khproxy demo` on a free port and runs
// every example against it. Besides each example's own checks, the number of
// services (one per order) shows that its retry placed no second order. A
// proxy in the environment that cannot be reached shows that the examples
// talk to khproxy directly, as docs/calling-the-api.md tells callers to.
func TestExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs khproxy; skipped with -short")
	}
	base := startDemo(t)
	deadProxy := "http://" + closedAddr(t)
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			before := serviceCount(t, base)
			out := t.TempDir()
			runFlow(t, ex, base, "OUT_DIR="+out, "HTTP_PROXY="+deadProxy, "http_proxy="+deadProxy, "ALL_PROXY="+deadProxy, "all_proxy="+deadProxy)
			if after := serviceCount(t, base); after != before+1 {
				t.Errorf("services went from %d to %d: want exactly one new order", before, after)
			}
		})
	}
}

// TestExamplesWaitForPendingOrders runs every example through a front that
// answers the first read of each order as the API does while the payment
// settles ("pending", no invoice yet): the examples ask again.
func TestExamplesWaitForPendingOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs khproxy; skipped with -short")
	}
	front := pendingOnce(t, startDemo(t))
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			out := runFlow(t, ex, front)
			if !regexp.MustCompile(`(?m)^   order [0-9]+ is pending; asking again in 1s$`).MatchString(out) {
				t.Errorf("no line says the order is pending:\n%s", out)
			}
		})
	}
}

// runFlow runs ex against the khproxy at base with extra environment
// variables, checks its output and the invoice it saved, and returns the
// output.
func runFlow(t *testing.T, ex example, base string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := ex.command(t, ctx)
	cmd.Dir = t.TempDir() // the working directory, which must stay empty
	cmd.Env = append(append(os.Environ(), "KHPROXY_URL="+base, "OUT_DIR="), env...)
	outDir := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "OUT_DIR="); ok {
			outDir = v
		}
	}
	out, stderr := run(t, cmd)
	if cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", cmd.ProcessState.ExitCode(), out, stderr)
	}
	m := matchLines(t, out)
	placed, retried, located, read := m[1][0], m[2][0], m[3][0], m[3][1]
	if placed != retried || placed != located || placed != read {
		t.Errorf("order ids differ between placing (%s), retrying (%s), the Location (%s) and reading back (%s)", placed, retried, located, read)
	}
	// The invoice goes to OUT_DIR, or else to a new temporary directory,
	// never into the working directory (the repository, as the README
	// runs the examples).
	file := m[4][0]
	if want := "invoice-" + m[3][2] + ".pdf"; filepath.Base(file) != want {
		t.Errorf("saved %s, want a file named %s", file, want)
	}
	switch dir := filepath.Dir(file); {
	case outDir != "" && dir != outDir:
		t.Errorf("saved %s, want it in OUT_DIR %s", file, outDir)
	case outDir == "" && !strings.HasPrefix(filepath.Base(dir), "khproxy-example-"):
		t.Errorf("saved %s, want it in a new temporary directory", file)
	case outDir == "":
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	pdf, err := os.ReadFile(file)
	if err != nil || !strings.HasPrefix(string(pdf), "%PDF-") {
		t.Errorf("saved invoice: %v, starts with %q", err, pdf[:min(len(pdf), 8)])
	}
	if left, _ := os.ReadDir(cmd.Dir); len(left) > 0 {
		t.Errorf("the example wrote %s into its working directory", left[0].Name())
	}
	return out
}

// pendingOnce serves a reverse proxy to base that answers the first GET of
// each /v1/orders/{id} with the order as it looks while its payment
// settles: status "pending", no service and no invoice yet.
func pendingOnce(t *testing.T, base string) string {
	t.Helper()
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	orderPath := regexp.MustCompile(`^/v1/orders/[0-9]+$`)
	var mu sync.Mutex
	seen := map[string]bool{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		path := resp.Request.URL.Path
		if resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK || !orderPath.MatchString(path) {
			return nil
		}
		mu.Lock()
		first := !seen[path]
		seen[path] = true
		mu.Unlock()
		if !first {
			return nil
		}
		var order map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&order); err != nil {
			return err
		}
		resp.Body.Close()
		order["status"], order["service_id"], order["invoice_id"] = "pending", nil, nil
		body, err := json.Marshal(order)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	front := httptest.NewServer(rp)
	t.Cleanup(front.Close)
	return front.URL
}

// TestExamplesFailClearly runs every example against a closed port and a
// server that is not khproxy: each exits non-zero and says why.
func TestExamplesFailClearly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs interpreters; skipped with -short")
	}
	closed := "http://" + closedAddr(t)
	notKhproxy := httptest.NewServer(http.NotFoundHandler())
	defer notKhproxy.Close()

	targets := []struct {
		name, url, want string
	}{
		{"closed port", closed, "FAILED: cannot reach khproxy at " + closed},
		{"not khproxy", notKhproxy.URL, "FAILED: GET /v1/products: status 404, want 200"},
	}
	for _, ex := range examples {
		for _, tt := range targets {
			t.Run(ex.name+"/"+tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cmd := ex.command(t, ctx)
				cmd.Dir = t.TempDir()
				cmd.Env = append(os.Environ(), "KHPROXY_URL="+tt.url)
				out, stderr := run(t, cmd)
				if code := cmd.ProcessState.ExitCode(); code == 0 || code == -1 {
					t.Errorf("exit status %d, want a failure", code)
				}
				if !strings.Contains(stderr, tt.want) {
					t.Errorf("stderr lacks %q\nstdout:\n%s\nstderr:\n%s", tt.want, out, stderr)
				}
			})
		}
	}
}

// run runs cmd to its end and returns its stdout and stderr. A non-zero exit
// is left to the caller (cmd.ProcessState); failing to start is fatal.
func run(t *testing.T, cmd *exec.Cmd) (string, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%s: %v", cmd, err)
	}
	return stdout.String(), stderr.String()
}

// matchLines checks out against wantLines (other lines, such as retry
// notes, may come between) and returns each line's submatches.
func matchLines(t *testing.T, out string) [][]string {
	t.Helper()
	var got [][]string
	lines := strings.Split(strings.TrimSpace(out), "\n")
	i := 0
	for _, line := range lines {
		if i < len(wantLines) {
			if m := wantLines[i].FindStringSubmatch(line); m != nil {
				got = append(got, m[1:])
				i++
			}
		}
	}
	if i < len(wantLines) {
		t.Fatalf("no line matches %s\noutput:\n%s", wantLines[i], out)
	}
	return got
}

// serviceCount asks the API, through khproxy, how many services (one per
// order) the demo account has.
func serviceCount(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/v1/services?per_page=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Pagination struct {
			Total *int `json:"total"`
		} `json:"pagination"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != http.StatusOK || page.Pagination.Total == nil {
		t.Fatalf("GET /v1/services: status %d, %v", resp.StatusCode, err)
	}
	return *page.Pagination.Total
}

// startDemo builds khproxy, runs `khproxy demo` on a free loopback port and
// returns its URL from the banner. The demo is stopped with SIGINT when the
// test ends, and must exit cleanly.
func startDemo(t *testing.T) string {
	t.Helper()
	// The banner: "khproxy demo: the signing proxy listens on http://ADDR, ..."
	return startKhproxy(t, []string{"demo"}, regexp.MustCompile(`listens on (http://[^\s,]+)`),
		"KH_LISTEN=127.0.0.1:0", "KH_LOG_FORMAT=json", "KH_LOG_LEVEL=warn")
}

// buildKhproxy builds khproxy into a temporary directory and returns its path.
func buildKhproxy(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building khproxy needs the go command on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "khproxy")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startKhproxy builds khproxy, runs it with args and env added, and returns
// the first submatch of banner in its output. It is stopped with SIGINT
// when the test ends, and must exit cleanly.
func startKhproxy(t *testing.T, args []string, banner *regexp.Regexp, env ...string) string {
	t.Helper()
	bin := buildKhproxy(t)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logs := &testutil.SyncBuffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("khproxy %s ended with %v\n%s", args[0], err, logs)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("khproxy %s did not stop on SIGINT\n%s", args[0], logs)
		}
	})

	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := banner.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	select {
	case base := <-found:
		return base
	case err := <-exited:
		exited <- err // for the cleanup
		t.Fatalf("khproxy %s ended before its banner: %v\n%s", args[0], err, logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("khproxy %s printed no banner within 30s\n%s", args[0], logs)
	}
	return ""
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestControlEndpointFromBash runs examples/control/tenants.sh against
// `khproxy emulator`: a second account's key made over the control endpoint,
// tenant isolation's 404 and the 402 reason client_not_found, each request
// signed by the script itself.
func TestControlEndpointFromBash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs khproxy; skipped with -short")
	}
	for _, prog := range []string{"bash", "curl", "jq", "openssl"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("control example skipped: %s is not installed (on Debian: apt-get install %s)", prog, prog)
		}
	}
	emu := startKhproxy(t, []string{"emulator", "-listen", "127.0.0.1:0"}, regexp.MustCompile(`^listening on (http://\S+)`),
		"KH_LOG_FORMAT=json", "KH_LOG_LEVEL=warn")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "control/tenants.sh")
	cmd.Env = append(os.Environ(), "EMULATOR_URL="+emu)
	out, stderr := run(t, cmd)
	if cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", cmd.ProcessState.ExitCode(), out, stderr)
	}
	for _, want := range []string{
		`(?m)^1\. keys: kh_live_\w{32} \(acct_a\), kh_live_\w{32} \(acct_b\)$`,
		`(?m)^2\. acct_a placed order \d+: 201 pending$`,
		`(?m)^3\. acct_b reads order \d+: 404 not_found$`,
		`(?m)^4\. acct_b orders: 402 payment_required \(reason client_not_found\)$`,
		`(?m)^ok$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no line matches %s\noutput:\n%s", want, out)
		}
	}
}
