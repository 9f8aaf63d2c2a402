package httpx

import (
	"mp3converter/internal/logging"

	"context"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is reachable.
type Check func(ctx context.Context) error

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors (goroutines, memory, open file descriptors) registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Ops serves /healthz (the process is alive), /readyz (every check passes)
// and /metrics.
type Ops struct {
	Registry *prometheus.Registry
	mu       sync.Mutex
	checks   map[string]Check
	failing  map[string]bool // checks whose last run failed, to log changes only
	timeout  time.Duration
}

// NewOps returns an Ops with reg and a per-check timeout of 2 s.
func NewOps(reg *prometheus.Registry) *Ops {
	return &Ops{Registry: reg, checks: map[string]Check{}, failing: map[string]bool{}, timeout: 2 * time.Second}
}

// AddCheck adds a readiness check.
func (o *Ops) AddCheck(name string, c Check) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.checks[name] = c
}

// Mount adds the three routes to r.
func (o *Ops) Mount(r chi.Router) {
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { Text(w, http.StatusOK, "ok") })
	r.Get("/readyz", o.ready)
	r.Handle("/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{}))
}

func (o *Ops) ready(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	names := make([]string, 0, len(o.checks))
	for n := range o.checks {
		names = append(names, n)
	}
	checks := o.checks
	o.mu.Unlock()
	sort.Strings(names)

	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(names))
	for _, n := range names {
		go func(n string) {
			ctx, cancel := context.WithTimeout(r.Context(), o.timeout)
			defer cancel()
			results <- result{n, checks[n](ctx)}
		}(n)
	}
	status := map[string]string{}
	ok := true
	for range names {
		res := <-results
		if res.err != nil {
			ok = false
			status[res.name] = "unavailable"
		} else {
			status[res.name] = "ok"
		}
		o.logChange(r.Context(), res.name, res.err)
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	JSON(w, code, map[string]any{"ready": ok, "checks": status})
}

// logChange logs a check that starts failing (WARN) or recovers (INFO);
// a probe every few seconds repeating the same failure logs at DEBUG.
func (o *Ops) logChange(ctx context.Context, name string, err error) {
	o.mu.Lock()
	was := o.failing[name]
	o.failing[name] = err != nil
	o.mu.Unlock()
	log := logging.From(ctx)
	switch {
	case err != nil && !was:
		log.Warn("readiness check failed", "check", name, "err", err)
	case err != nil:
		log.Debug("readiness check still failing", "check", name, "err", err)
	case was:
		log.Info("readiness check recovered", "check", name)
	}
}

// OpsHandler is the whole handler of a health/metrics-only port (the
// converter's and the notification's PORT).
func OpsHandler(o *Ops, log *slog.Logger) http.Handler {
	r := chi.NewRouter()
	r.Use(Middleware(log, nil, 10*time.Second))
	o.Mount(r)
	return r
}
