package httpx

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"mp3converter/internal/logging"
)

type ctxKey int

const requestIDKey ctxKey = 0

// RequestIDHeader carries the request ID between services and back to clients.
const RequestIDHeader = "X-Request-ID"

// RequestID returns the request's ID, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// Middleware is the common chain: request ID, panic recovery, access log,
// metrics and a per-request deadline (0 = none). Health and metrics routes
// are logged at debug level only.
func Middleware(log *slog.Logger, m *Metrics, timeout time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			id := r.Header.Get(RequestIDHeader)
			if !validID(id) {
				id = logging.NewID()
			}
			w.Header().Set(RequestIDHeader, id)
			rl := log.With("request_id", id)
			ctx := context.WithValue(r.Context(), requestIDKey, id)
			ctx = logging.Into(ctx, rl)
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			var body *bodyTracker
			if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
				body = &bodyTracker{ReadCloser: r.Body}
				r.Body = body
			}
			sw := &statusWriter{ResponseWriter: w, body: body}
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					rl.Error("panic in handler", "panic", p, "path", r.URL.Path)
					if !sw.wrote {
						Text(sw, http.StatusInternalServerError, "internal server error")
					}
				}
				route := chi.RouteContext(ctx)
				pattern := ""
				if route != nil {
					pattern = route.RoutePattern()
				}
				if pattern == "" {
					pattern = "unmatched"
				}
				d := time.Since(start)
				if m != nil {
					m.requests.WithLabelValues(r.Method, pattern, strconv.Itoa(sw.status())).Inc()
					m.duration.WithLabelValues(r.Method, pattern).Observe(d.Seconds())
				}
				lvl := slog.LevelInfo
				if pattern == "/healthz" || pattern == "/readyz" || pattern == "/metrics" {
					lvl = slog.LevelDebug
				}
				rl.Log(ctx, lvl, "http request", "method", r.Method, "path", r.URL.Path,
					"route", pattern, "status", sw.status(), "bytes", sw.n,
					"duration_ms", float64(d.Microseconds())/1000, "remote", r.RemoteAddr)
			}()
			next.ServeHTTP(sw, r.WithContext(ctx))
			if sw.closing {
				// The answer is written; net/http would now read what is
				// left of the body (up to 256 KiB, for as long as the
				// client takes) before closing. Let it read for a moment
				// only: what the client sends meanwhile is drained, so the
				// close is a FIN after the answer, not a reset that could
				// destroy the answer before the client reads it.
				_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(closeGrace))
			}
		})
	}
}

// closeGrace is how long a connection that will close after an error
// answer still reads (and discards) what its client sends.
const closeGrace = 500 * time.Millisecond

type statusWriter struct {
	http.ResponseWriter
	body    *bodyTracker // nil: the request has no body
	closing bool         // an error answer, the body unread: the connection closes after it
	code    int
	wrote   bool
	n       int64
}

// WriteHeader closes the connection after an error answer to a request
// whose body was not read to its end: net/http would otherwise read (drain)
// the rest of the body before sending the answer, so that a client
// trickling a body that never ends never gets its 401 or 413, and holds the
// connection as long as it likes.
func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
		if code >= 400 && w.body != nil && !w.body.eof.Load() {
			w.Header().Set("Connection", "close")
			w.closing = true
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) status() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes through for streaming responses, also through writers
// that only Unwrap.
func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// bodyTracker notes when a request body was read to its end.
type bodyTracker struct {
	io.ReadCloser
	eof atomic.Bool
}

func (b *bodyTracker) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// Metrics are the HTTP server metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the HTTP metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "HTTP request duration by method and route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Timeout gives each request a deadline (its context is cancelled after d).
func Timeout(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
