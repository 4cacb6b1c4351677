package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"khproxy/signer"
)

// These are smoke tests of the benchmark's pieces; they measure nothing.

func TestUpstreamAndPlainProxy(t *testing.T) {
	up := httptest.NewServer(&api{key: benchKey, secret: []byte(benchSecret)})
	defer up.Close()
	u, _ := url.Parse(up.URL + basePath)
	plain := httptest.NewServer(newPlainProxy(u))
	defer plain.Close()

	signed := func(method, target, body string) http.Header {
		s := &signer.Signer{Key: benchKey, Secret: signer.StaticSecret(benchSecret)}
		h, err := s.Sign(method, target, signer.BodyHash([]byte(body)), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		hdr := http.Header{}
		h.Apply(hdr)
		return hdr
	}
	tests := []struct {
		name, method, target, body string
		header                     http.Header
		want                       int
	}{
		{"products", "GET", "/v1/products", "", nil, http.StatusOK},
		{"order", "POST", "/v1/orders", `{"thread":1,"n":000000000001,"pad":"xx"}`, nil, http.StatusCreated},
		{"verify signed", "POST", verifyPath + "?a=1", `{"x":1}`, signed("POST", verifyPath+"?a=1", `{"x":1}`), http.StatusOK},
		{"verify other body", "POST", verifyPath, `{"x":2}`, signed("POST", verifyPath, `{"x":1}`), http.StatusUnauthorized},
		{"verify unsigned", "POST", verifyPath, `{}`, nil, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, plain.URL+tt.target, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status = %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
		})
	}
}

func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "localhost:0", "10.0.0.1:0"} {
		if ln, err := listenLoopback(addr); err == nil {
			ln.Close()
			t.Errorf("listenLoopback(%q) succeeded, want an error", addr)
		}
	}
}

// TestNewConnOverTLS runs the newconn client against a TLS server with the
// benchmark's own certificates: every call is a new connection.
func TestNewConnOverTLS(t *testing.T) {
	files, err := writeTLSFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	newConns := 0
	bodies := map[[32]byte]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies[sha256.Sum256(b)] = len(b) == 300
		mu.Unlock()
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			newConns++
			mu.Unlock()
		}
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()

	var out bytes.Buffer
	err = dispatch(context.Background(), []string{"newconn", "-url", srv.URL + "/v1/orders", "-method", "POST", "-size", "300",
		"-workers", "2", "-n", "5", "-duration", "1m", "-ca", files.CA}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := parseResult(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 10 || res.failures() != 0 {
		t.Errorf("result %+v, want 10 requests and no failure", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if newConns != 10 || len(bodies) != 10 {
		t.Errorf("%d connections and %d distinct bodies, want 10 of each", newConns, len(bodies))
	}
	for _, ok := range bodies {
		if !ok {
			t.Error("a body is not 300 bytes")
		}
	}
}

// TestUniqueLua runs wrk with unique.lua for a second: every body must be of
// the size asked for, and no two alike.
func TestUniqueLua(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk not installed (Debian package wrk; bash bench/run installs it)")
	}
	var mu sync.Mutex
	seen := map[[32]byte]bool{}
	var n, wrongSize int
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		n++
		seen[sha256.Sum256(b)] = true
		if len(b) != 1024 || r.Method != "POST" || r.URL.Path != "/v1/orders" {
			wrongSize++
		}
	}))
	defer up.Close()
	script := filepath.Join(t.TempDir(), "unique.lua")
	if err := os.WriteFile(script, uniqueLua, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := runWrk(context.Background(), wrk, script, up.URL, 4, time.Second, allRequests[1])
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n == 0 || res.failures() != 0 {
		t.Fatalf("%d requests arrived, result %+v", n, res)
	}
	if len(seen) != n {
		t.Errorf("%d distinct bodies in %d requests, want all distinct", len(seen), n)
	}
	if wrongSize > 0 {
		t.Errorf("%d of %d requests were not POST /v1/orders with 1024 bytes", wrongSize, n)
	}
}

func TestParseBenchOptions(t *testing.T) {
	o, err := parseBenchOptions([]string{"-khproxy", "k", "-quick", "-requests", "GET,64KiB", "-conns", "8"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 3 || len(o.requests) != 2 || o.requests[1].size != 64<<10 || len(o.conns) != 1 || o.conns[0] != 8 {
		t.Errorf("options %+v", o)
	}
	for _, bad := range [][]string{{}, {"-khproxy", "k", "-conns", "x"}, {"-khproxy", "k", "-requests", "2MiB"}, {"-khproxy", "k", "-rounds", "0"}} {
		if _, err := parseBenchOptions(bad, io.Discard); err == nil {
			t.Errorf("parseBenchOptions(%q) succeeded, want an error", bad)
		}
	}
}

func TestCommandLineInReport(t *testing.T) {
	got := withoutKhproxyFlag([]string{"-khproxy", "/tmp/k", "-quick", "-label=x y", "--khproxy=/a", "-label", "z", "-conns", "16"})
	if want := []string{"-quick", "-conns", "16"}; !slices.Equal(got, want) {
		t.Errorf("withoutKhproxyFlag = %q, want %q", got, want)
	}
}

func TestParseProcStat(t *testing.T) {
	// 52 fields as in Linux 6.x; utime (14) and stime (15) are 1234 and 567.
	const tail = " S 1 2 3 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 848811 3133440 382 18446744073709551615" +
		" 1 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 1 1 1 1 1 1 1 0\n"
	tests := []struct {
		name, stat string
		want       int64
		wantErr    bool
	}{
		{"plain name", "4242 (khproxy)" + tail, 1801, false},
		{"name with spaces and parentheses", "4242 (a) b (c)) d)" + tail, 1801, false},
		{"name looking like fields", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13)" + tail, 1801, false},
		{"no parenthesis", "4242 khproxy S 1 2 3", 0, true},
		{"cut short", "4242 (khproxy) S 1 2 3 0 -1 4194560 100 0 0 0 1234", 0, true},
		{"not a number", "4242 (khproxy) S 1 2 3 0 -1 4194560 100 0 0 0 12x4 567 0", 0, true},
		{"negative", "4242 (khproxy) S 1 2 3 0 -1 4194560 100 0 0 0 -4 567 0", 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat(tt.stat)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseProcStat error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseProcStat = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseMachineStat(t *testing.T) {
	tests := []struct {
		name, stat  string
		busy, total int64
		wantErr     bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{"linux 6", "cpu  412721 3 230285 993754 1392 7 43087 668 50 2\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 5 6\n",
			412721 + 3 + 230285 + 7 + 43087 + 668, 412721 + 3 + 230285 + 993754 + 1392 + 7 + 43087 + 668, false},
		{"no guest columns", "cpu 10 20 30 40 50 60 70 80\n", 10 + 20 + 30 + 60 + 70 + 80, 360, false},
		{"per-cpu lines only", "cpu0 1 2 3 4 5 6 7 8\ncpu1 1 2 3 4 5 6 7 8\n", 0, 0, true},
		{"no steal column", "cpu 10 20 30 40 50 60 70\n", 0, 0, true},
		{"not a number", "cpu 10 20 3o 40 50 60 70 80\n", 0, 0, true},
		{"empty", "", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			busy, total, err := parseMachineStat(tt.stat)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseMachineStat error = %v, want error %v", err, tt.wantErr)
			}
			if busy != tt.busy || total != tt.total {
				t.Errorf("parseMachineStat = %d, %d, want %d, %d", busy, total, tt.busy, tt.total)
			}
		})
	}
}

func TestReadCPUOfThisProcess(t *testing.T) {
	c, err := readCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if c.busy <= 0 || c.total < c.busy || c.proc < 0 {
		t.Errorf("readCPU = %+v, want 0 <= proc, 0 < busy <= total", c)
	}
}

func TestPerRequest(t *testing.T) {
	before := cpuTimes{proc: 1000, busy: 5000, total: 9000}
	tests := []struct {
		name     string
		after    cpuTimes
		requests float64
		want     cpuUse
	}{
		// 50 ticks of 10 ms over 1000 requests: 500 µs each.
		{"one second busy of two", cpuTimes{proc: 1050, busy: 5100, total: 9200}, 1000, cpuUse{procUS: 500, machineUS: 1000, busy: 0.5}},
		{"idle process", cpuTimes{proc: 1000, busy: 5200, total: 9200}, 400, cpuUse{procUS: 0, machineUS: 5000, busy: 1}},
		{"no requests", cpuTimes{proc: 1050, busy: 5100, total: 9200}, 0, cpuUse{busy: 0.5}},
		{"no time passed", before, 10, cpuUse{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := perRequest(before, tt.after, tt.requests); got != tt.want {
				t.Errorf("perRequest = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// cpuRow builds a row whose rounds have the given proxy CPU of the plain
// proxy and of khproxy, and machine CPU on the plain path, in µs/request.
func cpuRow(plain, khproxy, machine []float64) row {
	r := row{request: allRequests[3], conns: 16}
	for k := range plain {
		r.samples[0] = append(r.samples[0], sample{rps: 100, cpu: cpuUse{procUS: plain[k], machineUS: machine[k]}})
		r.samples[1] = append(r.samples[1], sample{rps: 80, cpu: cpuUse{procUS: khproxy[k]}})
	}
	return r
}

func TestCPUCeiling(t *testing.T) {
	tests := []struct {
		name                   string
		r                      row
		wantExtra, wantCeiling float64
		wantOK                 bool
	}{
		// The lead's 1 MiB figures: plain 140+338, khproxy 740+373 µs.
		{"medians over rounds", cpuRow([]float64{490, 478, 470}, []float64{1100, 1113, 1200}, []float64{2600, 2500, 2400}),
			1113 - 478, 2500.0 / (2500 + 635), true},
		{"even rounds", cpuRow([]float64{400, 500}, []float64{600, 700}, []float64{1000, 2000}), 200, 1500.0 / 1700, true},
		{"khproxy cheaper", cpuRow([]float64{500}, []float64{400}, []float64{1000}), -100, 1000.0 / 900, true},
		{"no machine figure", cpuRow([]float64{500}, []float64{600}, []float64{0}), 100, 0, false},
		{"no rounds", row{}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra, ceiling, ok := tt.r.cpuCeiling()
			if extra != tt.wantExtra || ceiling != tt.wantCeiling || ok != tt.wantOK {
				t.Errorf("cpuCeiling = %v, %v, %v, want %v, %v, %v", extra, ceiling, ok, tt.wantExtra, tt.wantCeiling, tt.wantOK)
			}
		})
	}
}

func TestCPUTableRow(t *testing.T) {
	var b strings.Builder
	printCPUTable(&b, []row{cpuRow([]float64{478}, []float64{1113}, []float64{2500})})
	// 2500 / (2500 + 635) = 0.797; the measured ratio is 80/100.
	want := "| POST 1 MiB | 16 | 478 / 1113 | 635 | 2500 / 0 | 0% / 0% | 0.80x | 0.80x |\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("table:\n%s\nwant a row %q", b.String(), want)
	}
}

func TestTLSTableRow(t *testing.T) {
	r := row{request: allRequests[0], conns: 16}
	r.samples[0] = []sample{{rps: 1000, p50: 8000, p99: 9000, cpu: cpuUse{procUS: 700, machineUS: 1900}}}
	r.samples[1] = []sample{{rps: 3000, p50: 3000, p99: 4000, cpu: cpuUse{procUS: 150, machineUS: 600}}}
	var b strings.Builder
	printTLSTable(&b, []row{r})
	// khproxy's own CPU, then the machine's on the direct path and via khproxy.
	want := "| GET | 16 | 1000 | 3000 | 3.00x | 8.00 / 3.00 | 9.00 / 4.00 | 150 | 1900 / 600 |\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("table:\n%s\nwant a row %q", b.String(), want)
	}
}
