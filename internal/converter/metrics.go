package converter

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the converter's Prometheus metrics (beside mq's). A nil
// *Metrics records nothing.
type Metrics struct {
	conversions *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	inFlight    prometheus.Gauge
}

// NewMetrics registers the metrics in reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		conversions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conversions_total",
			Help: "Conversion messages handled, by result: done, already (a redelivery of a converted video), " +
				"failed (permanent, reported to the user), retry (transient), exhausted (transient on the last attempt: reported, dead-lettered), " +
				"deferred (another converter holds the video's lease: tried again later, nothing reported), withdrawn (the gateway gave the upload up).",
		}, []string{"result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "conversion_duration_seconds",
			Help:    "Time from message received to handled, by result.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "conversions_in_flight",
			Help: "Conversions running now.",
		}),
	}
	for _, c := range []prometheus.Collector{m.conversions, m.duration, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register converter metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) begin() {
	if m != nil {
		m.inFlight.Inc()
	}
}

func (m *Metrics) end(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.inFlight.Dec()
	m.conversions.WithLabelValues(result).Inc()
	m.duration.WithLabelValues(result).Observe(d.Seconds())
}
