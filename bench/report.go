package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// sample is one measurement of one target.
type sample struct {
	rps      float64
	p50, p99 float64 // microseconds
	peak     int64   // bytes
	cpu      cpuUse  // the target's and the machine's, per request
}

// row is one scenario: samples[0] are the reference's (plain proxy, or the
// upstream called directly), samples[1] khproxy's, one per round.
type row struct {
	request request
	conns   int
	samples [2][]sample
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// field returns one figure of every sample of target i.
func (r row) field(i int, f func(sample) float64) []float64 {
	out := make([]float64, len(r.samples[i]))
	for k, s := range r.samples[i] {
		out[k] = f(s)
	}
	return out
}

// ratios returns khproxy's figure over the reference's, round by round
// (the two were measured back to back), as median, min and max.
func (r row) ratios(f func(sample) float64) (med, lo, hi float64) {
	a, b := r.field(0, f), r.field(1, f)
	var rs []float64
	for k := range min(len(a), len(b)) {
		if a[k] > 0 {
			rs = append(rs, b[k]/a[k])
		}
	}
	if len(rs) == 0 {
		return 0, 0, 0
	}
	return median(rs), slices.Min(rs), slices.Max(rs)
}

// peak returns the largest peak of target i over the scenario.
func (r row) peak(i int) int64 {
	var p int64
	for _, s := range r.samples[i] {
		p = max(p, s.peak)
	}
	return p
}

// cpuCeiling returns khproxy's extra CPU per request in its own process
// over the plain proxy's (medians over rounds) and the throughput ratio
// that extra allows when the machine's CPU is the limit: T/(T+extra), T the
// whole machine's CPU per request on the plain path (client, proxy and
// upstream). ok is false when there is nothing to compute it from.
func (r row) cpuCeiling() (extra, ceiling float64, ok bool) {
	extra = median(r.field(1, procCPU)) - median(r.field(0, procCPU))
	t := median(r.field(0, machineCPU))
	if t <= 0 || t+extra <= 0 {
		return extra, 0, false
	}
	return extra, t / (t + extra), true
}

var (
	rps        = func(s sample) float64 { return s.rps }
	p50        = func(s sample) float64 { return s.p50 }
	p99        = func(s sample) float64 { return s.p99 }
	procCPU    = func(s sample) float64 { return s.cpu.procUS }
	machineCPU = func(s sample) float64 { return s.cpu.machineUS }
	busy       = func(s sample) float64 { return s.cpu.busy }
)

func printHeader(w io.Writer, o benchOptions, args []string) {
	fmt.Fprintf(w, "# khproxy load benchmark\n\n")
	fmt.Fprintf(w, "- Command: `%s`\n", strings.TrimSpace("bash bench/run "+strings.Join(withoutKhproxyFlag(args), " ")))
	if o.label != "" {
		fmt.Fprintf(w, "- khproxy: %s\n", o.label)
	}
	fmt.Fprintf(w, "- Date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- Machine: %s, %d CPUs, Linux %s, %s\n", cpuModel(), runtime.NumCPU(), kernel(), runtime.Version())
	fmt.Fprintf(w, "- Method: wrk, 2 threads, every body unique; %d rounds of %s per target, targets alternating; "+
		"figures are medians over rounds, ratios are khproxy's over the reference's in the same round (median, min-max); "+
		"peak RSS is VmHWM over each measurement, largest over rounds\n\n", o.rounds, o.duration)
}

func withoutKhproxyFlag(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if name == "khproxy" || name == "label" {
			if !hasValue {
				i++
			}
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// printLoadTable prints the keep-alive scenarios: plain proxy vs khproxy.
func printLoadTable(w io.Writer, rows []row) {
	printTableHead(w, "Keep-alive clients (wrk): khproxy vs a plain httputil.ReverseProxy",
		"| Request | Conns | req/s plain | req/s khproxy | ratio | p50 ms plain / khproxy | p99 ms plain / khproxy | p99 ratio | peak RSS MiB plain / khproxy | RSS ratio |",
		"|---|---:|---:|---:|---|---|---|---|---|---|")
	var peaks [2]int64
	for _, r := range rows {
		med, lo, hi := r.ratios(rps)
		p99med, p99lo, p99hi := r.ratios(p99)
		peaks[0], peaks[1] = max(peaks[0], r.peak(0)), max(peaks[1], r.peak(1))
		fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %s | %s / %s | %s / %s | %s | %s / %s | %s |\n",
			r.request.name, r.conns,
			median(r.field(0, rps)), median(r.field(1, rps)), ratio(med, lo, hi),
			ms(median(r.field(0, p50))), ms(median(r.field(1, p50))),
			ms(median(r.field(0, p99))), ms(median(r.field(1, p99))), ratio(p99med, p99lo, p99hi),
			mib(r.peak(0)), mib(r.peak(1)), ratio(float64(r.peak(1))/float64(max(1, r.peak(0))), 0, 0))
	}
	fmt.Fprintf(w, "\nPeak RSS over the whole run: plain %s MiB, khproxy %s MiB (%.2fx).\n\n",
		mib(peaks[0]), mib(peaks[1]), float64(peaks[1])/float64(max(1, peaks[0])))
}

// printCPUTable prints the keep-alive scenarios' CPU per request and the
// throughput ratio it predicts on a CPU-bound machine.
func printCPUTable(w io.Writer, rows []row) {
	printTableHead(w, "CPU per request (keep-alive): where the gap is",
		"| Request | Conns | proxy CPU µs/req plain / khproxy | khproxy extra µs/req | machine µs/req plain / khproxy | machine busy plain / khproxy | CPU-bound ceiling | req/s ratio |",
		"|---|---:|---|---:|---|---|---:|---|")
	for _, r := range rows {
		extra, ceiling, ok := r.cpuCeiling()
		c := "-"
		if ok {
			c = fmt.Sprintf("%.2fx", ceiling)
		}
		fmt.Fprintf(w, "| %s | %d | %s / %s | %.0f | %s / %s | %s / %s | %s | %s |\n",
			r.request.name, r.conns,
			us(median(r.field(0, procCPU))), us(median(r.field(1, procCPU))), extra,
			us(median(r.field(0, machineCPU))), us(median(r.field(1, machineCPU))),
			percent(median(r.field(0, busy))), percent(median(r.field(1, busy))),
			c, ratio(r.ratios(rps)))
	}
	fmt.Fprintf(w, "\nProxy CPU is the proxy process's utime+stime over each measurement, machine CPU the whole machine's "+
		"busy time (user+nice+system+irq+softirq+steal in /proc/stat: wrk, proxy and upstream), each divided by wrk's "+
		"requests, medians over rounds. The CPU-bound ceiling is T/(T+extra), T the machine µs/req on the plain path: "+
		"the ratio khproxy can reach when the CPU is the limit (machine busy near 100%%) and its extra work is all that "+
		"differs; there, the req/s ratio should sit near it.\n\n")
}

// printTLSTable prints the new-connection-per-request scenario: the TLS
// upstream called directly vs khproxy over loopback HTTP.
func printTLSTable(w io.Writer, rows []row) {
	printTableHead(w, "A new connection per request: the TLS upstream directly vs khproxy over loopback HTTP",
		"| Request | Callers | req/s direct TLS | req/s via khproxy | ratio | p50 ms direct / khproxy | p99 ms direct / khproxy | khproxy CPU µs/req | machine µs/req direct / khproxy |",
		"|---|---:|---:|---:|---|---|---|---:|---|")
	for _, r := range rows {
		med, lo, hi := r.ratios(rps)
		fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %s | %s / %s | %s / %s | %s | %s / %s |\n",
			r.request.name, r.conns,
			median(r.field(0, rps)), median(r.field(1, rps)), ratio(med, lo, hi),
			ms(median(r.field(0, p50))), ms(median(r.field(1, p50))),
			ms(median(r.field(0, p99))), ms(median(r.field(1, p99))),
			us(median(r.field(1, procCPU))),
			us(median(r.field(0, machineCPU))), us(median(r.field(1, machineCPU))))
	}
	fmt.Fprintln(w, "\nkhproxy CPU is its own process's; machine CPU is the whole machine's (callers, khproxy, upstream), both per request as above.")
}

// printTableHead prints a table's title, its header row and its alignment
// row.
func printTableHead(w io.Writer, title, header, align string) {
	fmt.Fprintf(w, "## %s\n\n%s\n%s\n", title, header, align)
}

// ratio formats a median ratio with its range, when there is one.
func ratio(med, lo, hi float64) string {
	if lo == hi {
		return fmt.Sprintf("%.2fx", med)
	}
	return fmt.Sprintf("%.2fx (%.2f-%.2f)", med, lo, hi)
}

func ms(us float64) string { return fmt.Sprintf("%.2f", us/1000) }

func us(v float64) string { return fmt.Sprintf("%.0f", v) }

func percent(f float64) string { return fmt.Sprintf("%.0f%%", f*100) }

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
