package guard

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the guard's measurements. Create them with NewMetrics; a nil
// *Metrics measures nothing. Safe for concurrent use.
type Metrics struct {
	refusals *prometheus.CounterVec
	orders   prometheus.Gauge
	spend    *prometheus.GaugeVec
}

// NewMetrics registers the guard's metrics with reg:
// khproxy_guard_refusals_total{rule}, khproxy_guard_period_orders and
// khproxy_guard_period_spend{currency} (in currency units, as last seen by
// this replica: with Redis, every replica's orders).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "khproxy_guard_refusals_total",
			Help: "Requests the guard refused, by rule (not_allowed, order_limit, spend_limit, guard_unavailable)."}, []string{"rule"}),
		orders: prometheus.NewGauge(prometheus.GaugeOpts{Name: "khproxy_guard_period_orders",
			Help: "Orders counted in the current order-limit period, as last seen."}),
		spend: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "khproxy_guard_period_spend",
			Help: "Money counted in the current spend-limit period, in currency units, as last seen."}, []string{"currency"}),
	}
	for _, rule := range []string{RuleNotAllowed, RuleOrderLimit, RuleSpendLimit, RuleUnavailable} {
		m.refusals.WithLabelValues(rule)
	}
	for _, c := range []prometheus.Collector{m.refusals, m.orders, m.spend} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("guard: registering metrics"), err)
		}
	}
	return m, nil
}

func (m *Metrics) refused(rule string) {
	if m != nil {
		m.refusals.WithLabelValues(rule).Inc()
	}
}

func (m *Metrics) usage(u Usage, currency string, l Limits) {
	if m == nil {
		return
	}
	if l.OrderPer > 0 {
		m.orders.Set(float64(u.Orders))
	}
	if l.SpendPer > 0 {
		m.spend.WithLabelValues(currency).Set(float64(u.Spent) / 100)
	}
}
