// Package httpx holds the HTTP pieces every binary shares: the server runner
// with timeouts and graceful shutdown, middleware (request IDs, access logs,
// panic recovery, metrics), the error responder, and the operational
// endpoints /healthz, /readyz and /metrics.
package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServerConfig holds the timeouts of one HTTP server.
type ServerConfig struct {
	ReadHeaderTimeout time.Duration // default 10s
	ReadTimeout       time.Duration // whole request including body; 0 = none (large uploads)
	WriteTimeout      time.Duration // whole response; 0 = none (large downloads)
	IdleTimeout       time.Duration // default 120s
	ShutdownTimeout   time.Duration // default 20s
	MaxHeaderBytes    int           // default 64 KiB
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	return c
}

// Server is an http.Server whose listener is opened up front, so callers
// (and tests, with port 0) know the address before serving starts.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
	cfg ServerConfig
}

// Listen opens addr and prepares a server for h.
func Listen(addr string, h http.Handler, cfg ServerConfig, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return &Server{srv: srv, ln: ln, log: log, cfg: cfg}, nil
}

// OnShutdown calls f when the server starts shutting down, before it waits
// for the requests in flight: f ends those that would not end by
// themselves (event streams).
func (s *Server) OnShutdown(f func()) { s.srv.RegisterOnShutdown(f) }

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx is cancelled, then shuts down gracefully within the
// configured ShutdownTimeout (in-flight requests finish; new ones are refused).
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info("http server listening", "addr", s.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	s.log.Info("http server shutting down", "addr", s.Addr(), "timeout", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("shutdown %s: %w", s.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", s.Addr(), err)
	}
	return nil
}
