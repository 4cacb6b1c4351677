package ratelimittest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"khproxy/ratelimit"
)

// NewLimiter builds a Limiter from opts with its metrics in a new registry,
// which it returns for Metric. It fails t when opts are invalid.
func NewLimiter(t testing.TB, opts ratelimit.Options) (*ratelimit.Limiter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	l, err := ratelimit.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l, reg
}

// Metric returns the metric name gathered from reg: a counter's or a
// gauge's value, a histogram's sample count. It fails t when reg has no
// such metric.
func Metric(t testing.TB, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
