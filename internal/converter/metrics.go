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
	readBytes   prometheus.Histogram
	readRatio   prometheus.Histogram
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
		readBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "conversion_input_read_bytes",
			Help:    "Bytes of the video read from storage per conversion (seekable input: only what ffmpeg needs, or all of it once).",
			Buckets: prometheus.ExponentialBuckets(1<<20, 4, 10), // 1 MiB … 256 GiB
		}),
		readRatio: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "conversion_input_read_ratio",
			Help:    "Bytes read from storage per conversion over the video's size (above 1: chunks read twice).",
			Buckets: []float64{0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1, 1.1, 1.5, 2},
		}),
	}
	for _, c := range []prometheus.Collector{m.conversions, m.duration, m.inFlight, m.readBytes, m.readRatio} {
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

// read records the bytes of a video of size bytes read from storage.
func (m *Metrics) read(bytes, size int64) {
	if m == nil || size <= 0 {
		return
	}
	m.readBytes.Observe(float64(bytes))
	m.readRatio.Observe(float64(bytes) / float64(size))
}
