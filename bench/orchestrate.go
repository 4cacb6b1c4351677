package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"khproxy/bench/internal/benchproc"
)

// proc is a process the benchmark started.
type proc = benchproc.Proc

// The key and secret khproxy signs with in the benchmark; the upstream's
// verify path checks them.
const (
	benchKey    = "kh_live_BENCHMARK0000000000000000000000"
	benchSecret = "khbench-secret-not-a-real-one-0123456789"
)

// runBench starts the upstream, the plain proxy and khproxy, measures them
// and prints the results as Markdown tables.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseBenchOptions(args, stderr)
	if err != nil {
		return err
	}
	if o.wrk, err = exec.LookPath(o.wrk); err != nil {
		return fmt.Errorf("run: wrk: %w (bash bench/run installs it)", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "khbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "unique.lua")
	if err := os.WriteFile(script, uniqueLua, 0o600); err != nil {
		return err
	}
	certs, err := writeTLSFiles(dir)
	if err != nil {
		return err
	}

	t := &targets{}
	defer t.stopAll()
	var env []string
	if o.budget != "" {
		env = append(env, "KH_MAX_INFLIGHT_BYTES="+o.budget)
	}
	if err := t.start(self, o.khproxy, certs, env...); err != nil {
		return err
	}
	if err := t.check(ctx); err != nil {
		return err
	}

	started := time.Now()
	printHeader(stdout, o, args)
	var rows []row
	for _, req := range o.requests {
		for _, c := range o.conns {
			fmt.Fprintf(stderr, "khbench: %s, %d connections ...\n", req.name, c)
			r, err := measure(ctx, o, []*proc{t.plain, t.khproxy}, func(p *proc, d time.Duration) (result, error) {
				return runWrk(ctx, o.wrk, script, "http://"+p.Addrs["http"], c, d, req)
			})
			if err != nil {
				return err
			}
			r.request, r.conns = req, c
			rows = append(rows, r)
		}
	}
	printLoadTable(stdout, rows)
	printCPUTable(stdout, rows)

	if o.tls {
		var tlsRows []row
		for _, req := range allRequests[:2] { // GET and POST 1 KiB

			fmt.Fprintf(stderr, "khbench: TLS, new connection per request: %s ...\n", req.name)
			r, err := measure(ctx, o, []*proc{t.upstream, t.khproxyTLS}, func(p *proc, d time.Duration) (result, error) {
				if p == t.upstream {
					return runNewConnLoad(ctx, self, "https://"+p.Addrs["https"]+basePath, certs.CA, o.tlsConns, d, req)
				}
				return runNewConnLoad(ctx, self, "http://"+p.Addrs["http"], "", o.tlsConns, d, req)
			})
			if err != nil {
				return err
			}
			r.request, r.conns = req, o.tlsConns
			tlsRows = append(tlsRows, r)
		}
		printTLSTable(stdout, tlsRows)
	}
	fmt.Fprintf(stdout, "\nTook %s.\n", time.Since(started).Round(time.Second))
	return t.stopAll()
}

// targets are the processes under test.
type targets struct {
	upstream   *proc // http and https listeners
	plain      *proc // plain ReverseProxy to upstream's http
	khproxy    *proc // khproxy to upstream's http
	khproxyTLS *proc // khproxy to upstream's https, trusting certs.CA
}

// start starts the upstream, the plain proxy and both khproxy, the latter
// with env added to their environment.
func (t *targets) start(self, khproxy string, certs tlsFiles, env ...string) error {
	var err error
	announced := func(line string, addrs map[string]string) bool {
		if k, v, ok := strings.Cut(line, " "); ok {
			addrs[k] = v
		}
		return line == "ready"
	}
	t.upstream, err = benchproc.Start("upstream", exec.Command(self, "upstream", "-tls-listen", "127.0.0.1:0", "-cert", certs.Cert, "-key", certs.Key), false, announced)
	if err != nil {
		return err
	}
	t.plain, err = benchproc.Start("plain", exec.Command(self, "plain", "-upstream", "http://"+t.upstream.Addrs["http"]+basePath), false, announced)
	if err != nil {
		return err
	}
	t.khproxy, err = startKhproxy("khproxy", khproxy, "http://"+t.upstream.Addrs["http"]+basePath, env...)
	if err != nil {
		return err
	}
	t.khproxyTLS, err = startKhproxy("khproxy (TLS upstream)", khproxy, "https://"+t.upstream.Addrs["https"]+basePath, append(env, "KH_UPSTREAM_CA_FILE="+certs.CA)...)
	return err
}

// startKhproxy starts khproxy configured by its environment only, as a user
// would run it: defaults everywhere but the upstream and the credentials,
// access log on (JSON, to a pipe that the benchmark drains), the admin
// listener (metrics) on a free port, since two khproxy cannot share the
// default :9090, and the rate limiter off: its default paces to the API's
// 60 requests a minute, which would measure the pacing, not khproxy. An
// older build ignores the variables it does not know.
func startKhproxy(name, bin, upstream string, env ...string) (*proc, error) {
	return benchproc.StartKhproxy(name, bin, append([]string{"KH_KEY=" + benchKey, "KH_SECRET=" + benchSecret,
		"KH_UPSTREAM=" + upstream, "KH_LISTEN=127.0.0.1:0", "KH_LOG_FORMAT=json",
		"KH_ADMIN_LISTEN=127.0.0.1:0", "KH_RATE_LIMIT=off", "KH_SHUTDOWN_DELAY=0s"}, env...), nil)
}

// check sends one request through each proxy: khproxy's must reach the
// upstream with a signature it verifies.
func (t *targets) check(ctx context.Context) error {
	for _, c := range []struct {
		url  string
		want int
	}{
		{"http://" + t.plain.Addrs["http"] + "/v1/products", http.StatusOK},
		{"http://" + t.khproxy.Addrs["http"] + verifyPath + "?q=1", http.StatusOK},
		{"http://" + t.khproxyTLS.Addrs["http"] + verifyPath, http.StatusOK},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, strings.NewReader(`{"check":true}`))
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("check %s: %w", c.url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			return fmt.Errorf("check %s: status %d, want %d: %s", c.url, resp.StatusCode, c.want, body)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	return nil
}

// stopAll stops every process started and reports the first that had
// already died.
func (t *targets) stopAll() error {
	var errs []error
	for _, p := range []*proc{t.khproxyTLS, t.khproxy, t.plain, t.upstream} {
		if p != nil {
			errs = append(errs, p.Alive())
			p.Stop()
		}
	}
	return errors.Join(errs...)
}

// measure runs load against each of two processes: a warm-up each, then
// rounds in which both are measured back to back, the first going first in
// odd rounds and second in even ones, so that a machine getting busier or
// quieter affects both alike.
func measure(ctx context.Context, o benchOptions, procs []*proc, load func(*proc, time.Duration) (result, error)) (row, error) {
	var r row
	for _, p := range procs {
		if _, err := load(p, o.warmup); err != nil {
			return r, err
		}
	}
	for round := range o.rounds {
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			if err := ctx.Err(); err != nil {
				return r, err
			}
			s, err := measureOnce(procs[i], o.duration, load)
			if err != nil {
				return r, err
			}
			r.samples[i] = append(r.samples[i], s)
		}
	}
	return r, nil
}

// measureOnce runs load against p for d and returns what it measured: the
// load's own figures, p's peak RSS and, read right before and right after
// the load, p's and the whole machine's CPU time per request.
func measureOnce(p *proc, d time.Duration, load func(*proc, time.Duration) (result, error)) (sample, error) {
	meter := benchproc.StartPeak(p)
	before, err := readCPU(p.Pid())
	if err != nil {
		meter.Stop()
		return sample{}, err
	}
	res, err := load(p, d)
	after, cpuErr := readCPU(p.Pid())
	peak := meter.Stop()
	if err == nil {
		err = p.Alive()
	}
	if err == nil {
		err = cpuErr
	}
	if err != nil {
		return sample{}, err
	}
	if res.failures() > 0 {
		return sample{}, fmt.Errorf("%s: %.0f of %.0f requests failed: %+v", p.Name, res.failures(), res.Requests+res.failures(), res.Errors)
	}
	return sample{rps: res.rps(), p50: res.P50US, p99: res.P99US, peak: peak, cpu: perRequest(before, after, res.Requests)}, nil
}
