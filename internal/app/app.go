// Package app is the process skeleton the four binaries share: the signal
// context, -version, the exit code, and one shutdown order for the parts
// that take work (a public HTTP server, a queue consumer) and the ops
// server (probes and metrics).
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/httpx"
	"mp3converter/internal/logging"
)

// Main is the whole of a binary's main. It answers -version, then calls
// run with a context that SIGINT or SIGTERM cancels and the arguments
// left after the flags (auth's operator commands); an error is printed,
// prefixed with name, and the process exits 1.
func Main(name, version string, run func(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := mainWith(ctx, name, version, os.Args[1:], os.Stdin, os.Stdout, run)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Service is the whole of a service binary's main: Main, refusing
// arguments (the configuration is the environment), then Start.
func Service[C interface{ Level() string }](name, version string, run func(context.Context, C, *slog.Logger) error) {
	Main(name, version, func(ctx context.Context, args []string, _ io.Reader, stdout io.Writer) error {
		if len(args) > 0 {
			return fmt.Errorf("%s takes no arguments (configuration is read from the environment)", name)
		}
		return Start(ctx, name, version, stdout, run)
	})
}

// Start loads and validates C from the environment (config.Load), makes
// the JSON logger at its LOG_LEVEL writing to stdout, and runs run.
func Start[C interface{ Level() string }](ctx context.Context, name, version string, stdout io.Writer,
	run func(context.Context, C, *slog.Logger) error) error {
	cfg, err := config.Load[C]()
	if err != nil {
		return err
	}
	log, err := logging.New(stdout, name, version, cfg.Level())
	if err != nil {
		return err
	}
	return run(ctx, cfg, log)
}

func mainWith(ctx context.Context, name, version string, args []string, stdin io.Reader, stdout io.Writer,
	run func(context.Context, []string, io.Reader, io.Writer) error) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, version)
		return nil
	}
	return run(ctx, fs.Args(), stdin, stdout)
}

// Addrs are where a started process listens: its public server (empty
// for a binary with none) and its ops server (empty when the public server
// mounts the ops endpoints).
type Addrs struct{ Public, Ops string }

type startedKey struct{}

// WithStarted returns a context that makes Serve call f with the servers'
// addresses once they listen: tests run a binary's Run in-process on port
// 0 and learn where it went (the way net/http/httptrace hooks a request).
func WithStarted(ctx context.Context, f func(Addrs)) context.Context {
	return context.WithValue(ctx, startedKey{}, f)
}

// Serve runs the public server (nil: none), the ops server (nil: none; a
// binary whose public server mounts the ops endpoints itself) and the
// other intake — what takes work: a consumer, a sweeper — until ctx ends.
// Then it stops the intake (the public server first among it), each part
// draining within its own bound, and only then the ops server, so that
// probes and metrics answer during the drain. If one part ends early (the
// ops port or a consumer failed), the others are stopped in the same order.
func Serve(ctx context.Context, log *slog.Logger, public, ops *httpx.Server, intake ...func(context.Context) error) error {
	if public != nil {
		intake = append([]func(context.Context) error{public.Serve}, intake...)
	}
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	opsErr := make(chan error, 1)
	if ops != nil {
		go func() { opsErr <- ops.Serve(opsCtx) }()
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	done := make(chan error, len(intake))
	for _, part := range intake {
		go func() { done <- part(runCtx) }()
	}
	if started, ok := ctx.Value(startedKey{}).(func(Addrs)); ok {
		var a Addrs
		if public != nil {
			a.Public = public.Addr()
		}
		if ops != nil {
			a.Ops = ops.Addr()
		}
		started(a)
	}
	var err error
	opsDone := ops == nil
	for left := len(intake); left > 0; {
		select {
		case e := <-done:
			left--
			err = errors.Join(err, e)
			stopRun() // one part ended: stop the others
		case e := <-opsErr:
			opsDone = true
			err = errors.Join(err, e)
			stopRun()
			opsErr = nil
		}
	}
	stopOps()
	if !opsDone {
		err = errors.Join(err, <-opsErr)
	}
	log.Info("stopped")
	return err
}

// OpsServer opens the ops port: /healthz, /readyz and /metrics of ops.
func OpsServer(port int, ops *httpx.Ops, log *slog.Logger) (*httpx.Server, error) {
	return httpx.Listen(":"+strconv.Itoa(port), httpx.OpsHandler(ops, log),
		httpx.ServerConfig{ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, ShutdownTimeout: 5 * time.Second}, log)
}
