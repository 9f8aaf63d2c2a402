// Command gateway is the public entry point on PORT (8080): POST /login,
// POST /upload, GET /download, GET /jobs, GET /jobs/{id}.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

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
	log.Info("starting", "port", cfg.Port, "auth", cfg.AuthAddr, "video_queue", cfg.VideoQueue,
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
	h := gateway.NewServer(gateway.Deps{Auth: authc, Videos: stores.Videos, MP3s: stores.MP3s, Jobs: stores.Jobs,
		Publisher: broker, Ops: ops, Log: log}, gateway.Options{
		VideoQueue: cfg.VideoQueue, MaxUploadBytes: cfg.MaxUploadBytes, UploadTimeout: cfg.UploadTimeout,
		PublishTimeout: cfg.PublishTimeout, RequestTimeout: cfg.RequestTimeout,
		DownloadIdleTimeout: cfg.DownloadIdleTimeout, TrustedProxies: cfg.TrustedProxies,
	})
	// No whole-request read or write timeout: uploads and downloads of
	// large files take long; each upload sets its own read deadline.
	srv, err := httpx.Listen(":"+strconv.Itoa(cfg.Port), h, httpx.ServerConfig{ShutdownTimeout: cfg.ShutdownTimeout}, log)
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}
