package webhook

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count deliveries by outcome, as khproxy_webhooks_total{outcome}.
// Create them with NewMetrics and set a Receiver's OnOutcome to their
// Outcome method; a nil *Metrics counts nothing. Safe for concurrent use.
type Metrics struct {
	outcomes *prometheus.CounterVec
}

// NewMetrics registers khproxy_webhooks_total{outcome} with reg, with a
// series at zero for each of Outcomes (package admin describes the
// pattern). It fails when the counter is already registered there.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "khproxy_webhooks_total",
		Help: "Inbound webhook deliveries, by outcome (forwarded, replay, mismatch, …; see package webhook).",
	}, []string{"outcome"})}
	for _, o := range Outcomes() {
		m.outcomes.WithLabelValues(string(o))
	}
	if err := reg.Register(m.outcomes); err != nil {
		return nil, errors.Join(errors.New("webhook: registering metrics"), err)
	}
	return m, nil
}

// Outcome counts one delivery that ended in o; it fits Receiver.OnOutcome.
func (m *Metrics) Outcome(o Outcome) {
	if m != nil {
		m.outcomes.WithLabelValues(string(o)).Inc()
	}
}
