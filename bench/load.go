package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// result is one load run's outcome, as unique.lua's done() and newconn
// print it: one JSON line.
type result struct {
	Requests   float64 `json:"requests"`
	DurationUS float64 `json:"duration_us"`
	P50US      float64 `json:"p50_us"`
	P99US      float64 `json:"p99_us"`
	Errors     struct {
		Connect float64 `json:"connect"`
		Read    float64 `json:"read"`
		Write   float64 `json:"write"`
		Status  float64 `json:"status"`
		Timeout float64 `json:"timeout"`
	} `json:"errors"`
}

// rps returns the requests per second.
func (r result) rps() float64 {
	if r.DurationUS <= 0 {
		return 0
	}
	return r.Requests / (r.DurationUS / 1e6)
}

// failures counts requests that failed or got a status of 400 or more.
func (r result) failures() float64 {
	e := r.Errors
	return e.Connect + e.Read + e.Write + e.Status + e.Timeout
}

// parseResult finds the JSON result line in a load generator's output.
func parseResult(out []byte) (result, error) {
	var r result
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(line, `{"requests":`) {
			err := json.Unmarshal([]byte(line), &r)
			return r, err
		}
	}
	return r, fmt.Errorf("no result line in:\n%s", out)
}

// request is what a load run sends: SIZE 0 means no body.
type request struct {
	name   string
	method string
	path   string
	size   int
}

//go:embed unique.lua
var uniqueLua []byte

// runWrk drives url with wrk for d (whole seconds) over conns connections,
// every body unique (unique.lua).
func runWrk(ctx context.Context, wrk, script, url string, conns int, d time.Duration, req request) (result, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-t", strconv.Itoa(min(2, conns)), "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs) + "s",
		"--timeout", "10s", "-s", script, url + req.path, "--", req.method, strconv.Itoa(req.size), req.path}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, wrk, args...).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return parseResult(out)
}

// runNewConnLoad runs `khbench newconn` as a process of its own, so that
// its work is not the orchestrator's.
func runNewConnLoad(ctx context.Context, self, url, ca string, workers int, d time.Duration, req request) (result, error) {
	args := []string{"newconn", "-url", url + req.path, "-method", req.method, "-size", strconv.Itoa(req.size),
		"-workers", strconv.Itoa(workers), "-duration", d.String()}
	if ca != "" {
		args = append(args, "-ca", ca)
	}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, self, args...).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("khbench %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return parseResult(out)
}

// runNewConn is the `newconn` load client: like a shell script calling curl,
// or PHP without a connection pool, every request opens a new connection
// (and, over https, makes a full TLS handshake). Bodies are unique, as in
// unique.lua. It prints a result line.
func runNewConn(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("newconn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "", "URL to call (http or https, loopback)")
	method := fs.String("method", "GET", "request method")
	size := fs.Int("size", 0, "body size in bytes; 0 sends none")
	workers := fs.Int("workers", 16, "concurrent callers")
	duration := fs.Duration("duration", 3*time.Second, "how long to call")
	ca := fs.String("ca", "", "PEM file of the CA to trust for https")
	perWorker := fs.Int("n", 0, "stop each caller after this many requests (0: run for -duration)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tlsConf := &tls.Config{}
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			return err
		}
		tlsConf.RootCAs = x509.NewCertPool()
		if !tlsConf.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("newconn: -ca %s: no certificate", *ca)
		}
	}
	// No keep-alive and no TLS session cache: a new connection and a full
	// handshake per request.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsConf, DisableCompression: true}}
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	var mu sync.Mutex
	var all []time.Duration
	var res result
	start := time.Now()
	var wg sync.WaitGroup
	for w := range *workers {
		wg.Go(func() {
			lat, failed := callLoop(ctx, client, *method, *target, *size, w+1, *perWorker)
			mu.Lock()
			defer mu.Unlock()
			all = append(all, lat...)
			res.Errors.Read += failed
		})
	}
	wg.Wait()
	res.DurationUS = float64(time.Since(start).Microseconds())
	res.Requests = float64(len(all))
	if len(all) > 0 {
		slices.Sort(all)
		res.P50US = float64(all[len(all)*50/100].Microseconds())
		res.P99US = float64(all[min(len(all)-1, len(all)*99/100)].Microseconds())
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

// callLoop calls url until ctx ends, or limit times when limit > 0, and
// returns the latencies of the calls that succeeded and the number that
// failed. A call cut by the end of the run counts as neither.
func callLoop(ctx context.Context, client *http.Client, method, url string, size, id, limit int) ([]time.Duration, float64) {
	var lat []time.Duration
	var failed float64
	body := newUniqueBody(size, id)
	for n := 1; ctx.Err() == nil && (limit == 0 || n <= limit); n++ {
		req, err := http.NewRequestWithContext(ctx, method, url, body.next(n))
		if err != nil {
			return lat, failed + 1
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode >= 400 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		switch {
		case err == nil:
			lat = append(lat, time.Since(t0))
		case ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
		default:
			failed++
		}
	}
	return lat, failed
}

// uniqueBody builds unique.lua's bodies in Go: {"thread":ID,"n":N,"pad":"…"}
// of exactly size bytes.
type uniqueBody struct {
	size, id int
	buf      []byte
}

func newUniqueBody(size, id int) *uniqueBody { return &uniqueBody{size: size, id: id} }

// next returns the body of request n, or nil when size is 0.
func (u *uniqueBody) next(n int) io.Reader {
	if u.size == 0 {
		return nil
	}
	u.buf = fmt.Appendf(u.buf[:0], `{"thread":%d,"n":%012d,"pad":"`, u.id, n)
	for len(u.buf) < u.size-2 {
		u.buf = append(u.buf, 'x')
	}
	u.buf = append(u.buf, `"}`...)
	return bytes.NewReader(u.buf)
}
