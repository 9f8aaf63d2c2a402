// Command gateway is the public entry point on PORT (8080): POST /login,
// POST /upload, GET /download, GET /jobs, GET /jobs/{id}.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"mp3converter/internal/authclient"
	"mp3converter/internal/config"
	"mp3converter/internal/gateway"
	"mp3converter/internal/httpx"
	"mp3converter/internal/logging"
	"mp3converter/internal/mongodb"
	"mp3converter/internal/mq"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(version)
		return nil
	}
	cfg, err := config.Load[gateway.Config]()
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stdout, "gateway", version, cfg.LogLevel)
	if err != nil {
		return err
	}
	log.Info("starting", "port", cfg.Port, "ops_port", cfg.OpsPort, "auth", cfg.AuthAddr, "video_queue", cfg.VideoQueue,
		"max_upload_bytes", cfg.MaxUploadBytes)

	authc, err := authclient.New(cfg.AuthAddr, cfg.AuthTimeout, cfg.AuthLoginTimeout)
	if err != nil {
		return err
	}
	stores, err := mongodb.Open(cfg.MongoURI.Reveal(), cfg.VideosDB, cfg.MP3sDB, "gateway")
	if err != nil {
		return err
	}
	defer stores.Close()

	reg := httpx.NewRegistry()
	mqMetrics, err := mq.NewMetrics(reg)
	if err != nil {
		return err
	}
	broker, err := mq.New(cfg.RabbitMQURL.Reveal(), log, mq.Options{ConnectionName: "gateway", Metrics: mqMetrics,
		// Declared at every connect, so that a consumer (the original's
		// converter) finds the queue before the first upload.
		Declare: []string{cfg.VideoQueue}})
	if err != nil {
		return err
	}
	defer broker.Close()

	ops := httpx.NewOps(reg)
	ops.AddCheck("mongodb", stores.Ping)
	ops.AddCheck("rabbitmq", broker.Ready)
	ops.AddCheck("auth", authc.Ready)
	h := gateway.NewServer(gateway.Deps{Auth: authc, Videos: stores.Videos, MP3s: stores.MP3s, Jobs: stores.Jobs, Expired: stores.Expired,
		Publisher: broker, Ops: ops, Log: log}, gateway.Options{
		VideoQueue: cfg.VideoQueue, MaxUploadBytes: cfg.MaxUploadBytes, UploadTimeout: cfg.UploadTimeout,
		PublishTimeout: cfg.PublishTimeout, RequestTimeout: cfg.RequestTimeout,
		DownloadIdleTimeout: cfg.DownloadIdleTimeout, TrustedProxies: cfg.TrustedProxies,
		UserQuotaBytes: cfg.UserQuotaBytes, UserMaxActive: cfg.UserMaxActive,
	})
	// Reading a request is bounded by REQUEST_TIMEOUT; an authenticated
	// upload moves its own read deadline to UPLOAD_TIMEOUT. No write
	// timeout: downloads of large files take long (each write moves an
	// idle deadline instead).
	srv, err := httpx.Listen(":"+strconv.Itoa(cfg.Port), h, httpx.ServerConfig{
		ReadTimeout: cfg.RequestTimeout, ShutdownTimeout: cfg.ShutdownTimeout}, log)
	if err != nil {
		return err
	}
	opsSrv, err := httpx.Listen(":"+strconv.Itoa(cfg.OpsPort), httpx.OpsHandler(ops, log),
		httpx.ServerConfig{ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, ShutdownTimeout: 5 * time.Second}, log)
	if err != nil {
		return err
	}
	// The ops server stays up while the public one drains its uploads, so
	// that probes and metrics keep answering during a graceful shutdown.
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	opsErr := make(chan error, 1)
	go func() { opsErr <- opsSrv.Serve(opsCtx) }()
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(serveCtx) }()
	select {
	case err = <-serveErr:
	case err = <-opsErr:
		stopServe() // the ops port died: drain and exit
		err = errors.Join(err, <-serveErr)
		opsErr <- nil
	}
	stopOps()
	return errors.Join(err, <-opsErr)
}
