// Command pressure measures how a built khproxy holds up under memory and
// connection pressure, on loopback only: it starts a slow upstream in this
// process and a fresh khproxy for every run, drives it, and reports the
// process's peak RSS (VmHWM) and what the clients saw.
//
// Scenarios:
//
//	upload   N clients POST a -size body each at once; the upstream holds
//	         every request for -delay. Reports statuses and peak RSS.
//	stall    N clients send -size minus one byte of a declared -size body and
//	         stall; meanwhile one good request per second. Reports RSS
//	         after -hold and what the good requests got.
//	trickle  N clients trickle their bodies at 20 B/s (under -nofile open
//	         files); meanwhile one good request per second for -hold.
//
// khproxy runs with its defaults, except KH_MAX_BODY_BYTES, raised to
// -size when -size is above the default, and what -env sets (-env wins).
// The default -size is just under the default body limit. A -size above
// the default budget (KH_MAX_INFLIGHT_BYTES, 2 MiB) only measures 413s
// unless -env raises the budget too; khproxy's start-up warnings are
// printed to stderr.
//
// Every run is bounded by -timeout. Examples (the second with the former
// defaults, 10 MiB bodies in a 64 MiB budget, as in docs/security.md's figures):
//
//	go run ./bench/pressure -scenario upload -clients 50,100,200
//	go run ./bench/pressure -scenario upload -clients 50,100,200 -size 10485759 \
//	    -env KH_RATE_LIMIT=off,KH_MAX_BODY_BYTES=10485760,KH_MAX_INFLIGHT_BYTES=67108864
//
// Benchmarks are not tests: the figures depend on the machine.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// defaultMaxBody is khproxy's default KH_MAX_BODY_BYTES.
const defaultMaxBody = 1 << 20

type options struct {
	bin      string
	scenario string
	clients  []int
	size     int64
	delay    time.Duration
	hold     time.Duration
	nofile   int
	env      []string
	timeout  time.Duration
}

func main() {
	var o options
	var clients, env string
	flag.StringVar(&o.bin, "bin", "", "khproxy binary (default: build this checkout into a temporary directory)")
	flag.StringVar(&o.scenario, "scenario", "upload", "upload, stall or trickle")
	flag.StringVar(&clients, "clients", "50,100,200", "comma-separated client counts, one run each")
	flag.Int64Var(&o.size, "size", defaultMaxBody-1, "body size in bytes")
	flag.DurationVar(&o.delay, "delay", 2*time.Second, "how long the upstream holds each upload")
	flag.DurationVar(&o.hold, "hold", 10*time.Second, "stall/trickle: how long to keep the slow clients")
	flag.IntVar(&o.nofile, "nofile", 0, "run khproxy with this open-file limit (ulimit -n); 0 keeps the current one")
	flag.StringVar(&env, "env", "", "extra khproxy environment, comma-separated KEY=VALUE")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "bound on each run")
	flag.Parse()
	for _, s := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fatalf("-clients: %q is not a positive number", s)
		}
		o.clients = append(o.clients, n)
	}
	if env != "" {
		o.env = strings.Split(env, ",")
	}
	if o.bin == "" {
		o.bin = build()
	}
	up := startUpstream(o.delay)
	defer up.Close()
	for _, n := range o.clients {
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		line, err := runOne(ctx, o, up.Addr().String(), n)
		cancel()
		if err != nil {
			fatalf("%d clients: %v", n, err)
		}
		fmt.Println(line)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "pressure: "+format+"\n", a...)
	os.Exit(1)
}

// build compiles the khproxy of this checkout.
func build() string {
	dir, err := os.MkdirTemp("", "pressure")
	if err != nil {
		fatalf("%v", err)
	}
	bin := filepath.Join(dir, "khproxy")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fatalf("go build: %v", err)
	}
	return bin
}

// startUpstream serves a slow stand-in for the API: uploads are read whole
// and answered after delay; GET /v1/health is answered at once.
func startUpstream(delay time.Duration) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("%v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost {
			time.Sleep(delay)
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln
}

// proc is one running khproxy.
type proc struct {
	cmd  *exec.Cmd
	addr string
}

func startKhproxy(o options, upstream string) (*proc, error) {
	shell := `exec "$0"`
	if o.nofile > 0 {
		shell = "ulimit -n " + strconv.Itoa(o.nofile) + ` && exec "$0"`
	}
	cmd := exec.Command("sh", "-c", shell, o.bin)
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"KH_KEY=kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
		"KH_SECRET=pressure-secret-0123456789abcdef",
		"KH_UPSTREAM=http://" + upstream + "/cp/kh_reseller_api",
		"KH_LISTEN=127.0.0.1:0",
		"KH_LOG_FORMAT=json",
	}
	if o.size > defaultMaxBody {
		env = append(env, "KH_MAX_BODY_BYTES="+strconv.FormatInt(o.size, 10))
	}
	cmd.Env = append(env, o.env...) // the last of duplicate keys wins
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var line struct{ Level, Msg, Var, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		if line.Level == "WARN" {
			fmt.Fprintf(os.Stderr, "pressure: khproxy warns: %s %s\n", line.Var, line.Msg)
		}
		if line.Msg == "khproxy listening" {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return &proc{cmd: cmd, addr: line.Addr}, nil
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, fmt.Errorf("khproxy did not start")
}

func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// memory returns the process's current and peak RSS in MiB.
func (p *proc) memory() (rss, peak float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}

func runOne(ctx context.Context, o options, upstream string, n int) (string, error) {
	p, err := startKhproxy(o, upstream)
	if err != nil {
		return "", err
	}
	defer p.stop()
	switch o.scenario {
	case "upload":
		return upload(ctx, o, p, n), nil
	case "stall", "trickle":
		return slow(ctx, o, p, n), nil
	}
	return "", fmt.Errorf("unknown scenario %q", o.scenario)
}

// tally counts outcomes by name.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[k]++
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, t.m[k]))
	}
	return strings.Join(parts, " ")
}

// outcome names a response or an error briefly.
func outcome(resp *http.Response, err error) string {
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout"
		}
		return "error"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}

func upload(ctx context.Context, o options, p *proc, n int) string {
	body := make([]byte, o.size)
	var got tally
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.addr+"/v1/upload", strings.NewReader(string(body)))
			got.add(outcome(client.Do(req)))
		})
	}
	wg.Wait()
	_, peak := p.memory()
	return fmt.Sprintf("upload clients=%d size=%d wall=%s peak_rss=%.0fMiB outcomes: %s",
		n, o.size, time.Since(start).Round(100*time.Millisecond), peak, &got)
}

// slow holds n slow clients and probes with one good request per second.
func slow(ctx context.Context, o options, p *proc, n int) string {
	var conns sync.WaitGroup
	var slowGot tally
	stop := make(chan struct{})
	for range n {
		conns.Go(func() { slowGot.add(slowClient(o, p.addr, stop)) })
	}
	var good tally
	var worst time.Duration
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(o.hold)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Second)
		t0 := time.Now()
		good.add(outcome(client.Get("http://" + p.addr + "/v1/health")))
		worst = max(worst, time.Since(t0))
	}
	rss, peak := p.memory()
	close(stop)
	conns.Wait()
	return fmt.Sprintf("%s clients=%d hold=%s rss=%.0fMiB peak_rss=%.0fMiB good: %s (slowest %s) slow clients: %s",
		o.scenario, n, o.hold, rss, peak, &good, worst.Round(time.Millisecond), &slowGot)
}

// slowClient sends a request whose body never completes (stall) or comes at
// 20 B/s (trickle), until stop, and returns what it got back.
func slowClient(o options, addr string, stop <-chan struct{}) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "dial-error"
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", o.size)
	answered := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			answered <- "closed"
			return
		}
		answered <- strconv.Itoa(resp.StatusCode)
	}()
	if o.scenario == "stall" {
		chunk := make([]byte, 64<<10)
		for sent := int64(0); sent < o.size-1; {
			k := min(int64(len(chunk)), o.size-1-sent)
			if _, err := c.Write(chunk[:k]); err != nil {
				break
			}
			sent += k
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case got := <-answered:
			return got
		case <-stop:
			return "still-open"
		case <-tick.C:
			if o.scenario == "trickle" {
				_, _ = c.Write(make([]byte, 20))
			}
		}
	}
}
