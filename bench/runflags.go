package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// benchOptions are `khbench run`'s flags.
type benchOptions struct {
	khproxy  string
	label    string
	wrk      string
	quick    bool
	rounds   int
	duration time.Duration
	warmup   time.Duration
	conns    []int
	requests []request
	tls      bool
	tlsConns int
	budget   string // KH_MAX_INFLIGHT_BYTES for khproxy; empty: its default
}

var allRequests = []request{
	{"GET", http.MethodGet, "/v1/products", 0},
	{"POST 1 KiB", http.MethodPost, "/v1/orders", 1 << 10},
	{"POST 64 KiB", http.MethodPost, "/v1/orders", 64 << 10},
	{"POST 1 MiB", http.MethodPost, "/v1/orders", 1 << 20},
}

func parseBenchOptions(args []string, stderr io.Writer) (benchOptions, error) {
	o := benchOptions{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.khproxy, "khproxy", "", "khproxy binary to measure (bench/run builds it from this checkout)")
	fs.StringVar(&o.label, "label", "", "what the khproxy binary is, for the report (bash bench/run sets it)")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk binary")
	fs.BoolVar(&o.quick, "quick", false, "short run (about a minute): 3 rounds of 1s")
	fs.IntVar(&o.rounds, "rounds", 8, "rounds; each measures every target once, in alternating order")
	fs.DurationVar(&o.duration, "duration", time.Second, "length of one measurement (whole seconds)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured run of each target before each scenario's rounds")
	conns := fs.String("conns", "16,64", "comma-separated connection counts")
	only := fs.String("requests", "", "comma-separated subset of: GET,1KiB,64KiB,1MiB (default all)")
	fs.BoolVar(&o.tls, "tls", true, "also run the new-connection-per-request TLS scenario")
	fs.IntVar(&o.tlsConns, "tls-callers", 16, "concurrent callers in the TLS scenario")
	fs.StringVar(&o.budget, "max-inflight-bytes", "", "KH_MAX_INFLIGHT_BYTES for khproxy, its memory budget for request bodies (default: khproxy's own)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.khproxy == "" {
		return o, errors.New("run: -khproxy is required (bash bench/run sets it)")
	}
	if o.quick {
		o.rounds, o.duration, o.warmup = 3, time.Second, time.Second
	}
	if o.rounds < 1 || o.duration < time.Second {
		return o, errors.New("run: -rounds must be at least 1 and -duration at least 1s")
	}
	for f := range strings.SplitSeq(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return o, fmt.Errorf("run: -conns: %q is not a positive number", f)
		}
		o.conns = append(o.conns, n)
	}
	for _, r := range allRequests {
		if *only == "" || strings.Contains(","+strings.ReplaceAll(*only, " ", "")+",", ","+strings.ReplaceAll(strings.TrimPrefix(r.name, "POST "), " ", "")+",") {
			o.requests = append(o.requests, r)
		}
	}
	if len(o.requests) == 0 {
		return o, fmt.Errorf("run: -requests %q selects nothing", *only)
	}
	return o, nil
}
