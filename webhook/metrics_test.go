package webhook_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"khproxy/webhook"
)

func TestMetricsCountOutcomes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := webhook.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Outcome(webhook.OutcomeMismatch)
	m.Outcome(webhook.OutcomeMismatch)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "khproxy_webhooks_total" {
		t.Fatalf("gathered %v, want khproxy_webhooks_total alone", mfs)
	}
	got := map[string]float64{}
	for _, s := range mfs[0].GetMetric() {
		got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
	}
	for _, o := range webhook.Outcomes() {
		want := 0.0
		if o == webhook.OutcomeMismatch {
			want = 2
		}
		if v, ok := got[string(o)]; !ok || v != want {
			t.Errorf("outcome %q = %v (present %v), want %v", o, v, ok, want)
		}
	}
	if n := testutil.CollectAndCount(reg); n != len(webhook.Outcomes()) {
		t.Errorf("%d series, want one per outcome (%d)", n, len(webhook.Outcomes()))
	}
	if _, err := webhook.NewMetrics(reg); err == nil {
		t.Error("registering the counter twice: no error")
	}
	var none *webhook.Metrics
	none.Outcome(webhook.OutcomeForwarded) // a nil *Metrics counts nothing, without panicking
}
