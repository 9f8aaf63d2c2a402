package mq

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of publishers and consumers, labelled
// by queue. Create one per process and pass it in Options; a nil *Metrics
// records nothing.
type Metrics struct {
	published  *prometheus.CounterVec
	consumed   *prometheus.CounterVec
	outcomes   *prometheus.CounterVec
	inFlight   *prometheus.GaugeVec
	connected  prometheus.Gauge
	reconnects prometheus.Counter
}

// Consumer outcomes, the values of the "outcome" label of
// mq_messages_handled_total.
const (
	OutcomeAcked        = "acked"         // handler succeeded
	OutcomeFailed       = "failed"        // permanent failure, acked
	OutcomeRetried      = "retried"       // transient failure, republished for a later attempt
	OutcomeDeadLettered = "dead_lettered" // attempts exhausted, moved to <queue>.dead
	OutcomeRequeued     = "requeued"      // nacked back to the queue (shutdown, or a failed republish)
	OutcomeRecounted    = "recounted"     // a redelivery, republished with its count before being handled
	OutcomeDeferred     = "deferred"      // the handler deferred it (ErrDeferred): republished, no attempt counted
	OutcomeLost         = "lost"          // its channel closed while it was handled: the broker redelivers it
)

// NewMetrics registers the metrics in reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mq_messages_published_total",
			Help: "Messages published, by queue and result (ok: confirmed by the broker; error).",
		}, []string{"queue", "result"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mq_messages_consumed_total",
			Help: "Deliveries handed to a handler, by queue.",
		}, []string{"queue"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mq_messages_handled_total",
			Help: "Deliveries settled, by queue and outcome (acked, failed, retried, deferred, dead_lettered, requeued, recounted, lost).",
		}, []string{"queue", "outcome"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mq_handlers_in_flight",
			Help: "Handlers running now, by queue.",
		}, []string{"queue"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mq_connected",
			Help: "1 while connected to the message broker.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mq_reconnects_total",
			Help: "Connections re-established after the broker went away.",
		}),
	}
	for _, c := range []prometheus.Collector{m.published, m.consumed, m.outcomes, m.inFlight, m.connected, m.reconnects} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register mq metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) onPublish(queue string, ok bool) {
	if m == nil {
		return
	}
	r := "ok"
	if !ok {
		r = "error"
	}
	m.published.WithLabelValues(queue, r).Inc()
}

func (m *Metrics) onHandled(queue, outcome string) {
	if m != nil {
		m.outcomes.WithLabelValues(queue, outcome).Inc()
	}
}

func (m *Metrics) onStart(queue string) {
	if m != nil {
		m.consumed.WithLabelValues(queue).Inc()
		m.inFlight.WithLabelValues(queue).Inc()
	}
}

func (m *Metrics) onFinish(queue string) {
	if m != nil {
		m.inFlight.WithLabelValues(queue).Dec()
	}
}

func (m *Metrics) onConnected(up bool) {
	if m == nil {
		return
	}
	if up {
		m.connected.Set(1)
	} else {
		m.connected.Set(0)
	}
}

func (m *Metrics) onReconnect() {
	if m != nil {
		m.reconnects.Inc()
	}
}
