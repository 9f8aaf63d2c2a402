package auth_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"mp3converter/internal/auth"
	"mp3converter/internal/httpx"
	"mp3converter/internal/token"
)

// BenchmarkValidateVsTrivial measures POST /validate requests per second
// under concurrent load on loopback and, in the same run, the same server
// stack (listener, middleware, logging, metrics) answering a trivial handler.
// Rounds alternate so machine noise hits both alike. Run with `make bench`
// (-benchtime=1x: the benchmark sets its own duration, BENCH_SECONDS per
// round, default 3).
func BenchmarkValidateVsTrivial(b *testing.B) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil)) // logs encoded, as in production
	tokens, _ := token.New("bench-secret", time.Hour)
	a, err := auth.NewAuthenticator(nil, tokens, auth.PasswordOptions{Cost: 4}, log) // validate never touches the store
	if err != nil {
		b.Fatal(err)
	}
	opt := auth.ServerOptions{RequestTimeout: 10 * time.Second, LoginRate: 1, LoginBurst: 1}
	validate := serve(b, auth.NewServer(a, tokens, httpx.NewOps(httpx.NewRegistry()), log, opt))

	ops := httpx.NewOps(httpx.NewRegistry())
	r := chi.NewRouter()
	r.Use(httpx.Middleware(log, httpx.NewMetrics(ops.Registry), 10*time.Second))
	r.Post("/validate", func(w http.ResponseWriter, _ *http.Request) { httpx.Text(w, 200, "ok") })
	trivial := serve(b, r)

	tok, _ := tokens.Issue("bench@example.com", false)
	round := 3 * time.Second
	if s := os.Getenv("BENCH_SECONDS"); s != "" {
		if d, err := time.ParseDuration(s + "s"); err == nil {
			round = d
		}
	}
	var vTotal, tTotal float64
	const rounds = 3
	b.ResetTimer()
	for range rounds {
		tTotal += load(b, trivial+"/validate", tok, round)
		vTotal += load(b, validate+"/validate", tok, round)
	}
	v, tr := vTotal/rounds, tTotal/rounds
	b.ReportMetric(v, "validate_req/s")
	b.ReportMetric(tr, "trivial_req/s")
	b.ReportMetric(v/tr, "ratio")
	b.Logf("validate %.0f req/s, trivial handler %.0f req/s, ratio %.2f (goal >= 0.60)", v, tr, v/tr)
}

func serve(b *testing.B, h http.Handler) string {
	srv, err := httpx.Listen("127.0.0.1:0", h, httpx.ServerConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return "http://" + srv.Addr()
}

// load sends POSTs with a bearer token from 32 workers for d and returns
// the rate of 200 responses.
func load(b *testing.B, url, tok string, d time.Duration) float64 {
	const workers = 32
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var ok, bad atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest("POST", url, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		b.Fatalf("%s: %d failed requests", url, n)
	}
	return float64(ok.Load()) / time.Since(start).Seconds()
}
