// Command converter consumes VIDEO_QUEUE, converts each video's audio to MP3
// with ffmpeg, stores it in GridFS "mp3s" and announces it on MP3_QUEUE. Its
// PORT (8081) serves only /healthz, /readyz and /metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/converter"
	"mp3converter/internal/httpx"
	"mp3converter/internal/logging"
	"mp3converter/internal/mongodb"
	"mp3converter/internal/mq"
	"mp3converter/internal/retention"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "converter:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("converter", flag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(version)
		return nil
	}
	cfg, err := config.Load[converter.Config]()
	if err != nil {
		return err
	}
	opt, err := cfg.Options()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log, err := logging.New(os.Stdout, "converter", version, cfg.LogLevel)
	if err != nil {
		return err
	}
	for _, bin := range []string{opt.FFmpegPath, opt.FFprobePath} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("FFMPEG_PATH/FFPROBE_PATH: %w", err)
		}
	}
	log.Info("starting", "port", cfg.Port, "video_queue", opt.VideoQueue, "mp3_queue", opt.MP3Queue,
		"concurrency", opt.Concurrency, "bitrate", opt.Bitrate, "max_duration", opt.MaxDuration.String(),
		"scratch_dir", opt.ScratchDir, "scratch_limit_bytes", opt.ScratchLimit, "stream_faststart", opt.StreamFaststart,
		"job_timeout", opt.JobTimeout.String(), "job_lease_ttl", opt.LeaseTTL.String(),
		"broker_consumer_timeout", cfg.BrokerConsumerTimeout.String())
	if opt.Prefetch > opt.Concurrency && cfg.BrokerConsumerTimeout > 0 {
		// Config.Options checked one delivery's JOB_TIMEOUT against the
		// broker's; a prefetched one also waits behind those in flight.
		log.Warn("PREFETCH is above CONCURRENCY: a prefetched message waits unacked behind the conversions in flight "+
			"and may outlast RabbitMQ's consumer_timeout, which hands it to another converter",
			"prefetch", opt.Prefetch, "concurrency", opt.Concurrency, "broker_consumer_timeout", cfg.BrokerConsumerTimeout.String())
	}
	if opt.ScratchLimit > 0 && opt.ScratchLimit < opt.MaxInputBytes {
		log.Warn("SCRATCH_LIMIT_BYTES is below MAX_INPUT_BYTES: videos between the two that need a temporary file fail",
			"scratch_limit_bytes", opt.ScratchLimit, "max_input_bytes", opt.MaxInputBytes)
	}

	stores, err := mongodb.Open(cfg.MongoURI.Reveal(), cfg.VideosDB, cfg.MP3sDB, "converter")
	if err != nil {
		return err
	}
	defer stores.Close()

	reg := httpx.NewRegistry()
	mqMetrics, err := mq.NewMetrics(reg)
	if err != nil {
		return err
	}
	metrics, err := converter.NewMetrics(reg)
	if err != nil {
		return err
	}
	broker, err := mq.New(cfg.RabbitMQURL.Reveal(), log, mq.Options{ConnectionName: "converter", Metrics: mqMetrics,
		// Declared at every connect, so that a consumer (the original's
		// notification) finds MP3_QUEUE before the first conversion.
		Declare: []string{opt.VideoQueue, mq.DeadLetterQueue(opt.VideoQueue), opt.MP3Queue}})
	if err != nil {
		return err
	}
	defer broker.Close()

	svc, err := converter.New(converter.Deps{Videos: stores.Videos, MP3s: stores.MP3s, Jobs: stores.Jobs, Publisher: broker,
		Log: log, Metrics: metrics}, opt)
	if err != nil {
		return err
	}
	sweeper, err := retention.New(retention.Deps{Videos: stores.Videos, MP3s: stores.MP3s, Jobs: stores.Jobs,
		Tombstones: stores.Expired, Log: log}, cfg.Retention)
	if err != nil {
		return err
	}
	log.Info("retention", "keep_videos", cfg.Retention.KeepVideos, "failed_video_grace", cfg.Retention.FailedVideoGrace.String(),
		"mp3_retention", cfg.Retention.MP3Retention.String(), "sweep_interval", cfg.Retention.SweepInterval.String())
	ops := httpx.NewOps(reg)
	ops.AddCheck("mongodb", stores.Ping)
	ops.AddCheck("rabbitmq", broker.Ready)
	srv, err := httpx.Listen(":"+strconv.Itoa(cfg.Port), httpx.OpsHandler(ops, log),
		httpx.ServerConfig{ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, ShutdownTimeout: 5 * time.Second}, log)
	if err != nil {
		return err
	}

	// The ops server stays up while the consumer drains, so that probes and
	// metrics keep answering during a graceful shutdown.
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	opsErr := make(chan error, 1)
	go func() { opsErr <- srv.Serve(opsCtx) }()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	swept := make(chan struct{})
	go func() { sweeper.Run(runCtx); close(swept) }()
	defer func() { stopRun(); <-swept }()
	consumeErr := make(chan error, 1)
	go func() { consumeErr <- svc.Run(runCtx, broker) }()
	select {
	case err = <-consumeErr:
	case err = <-opsErr:
		// The ops port died: drain the consumer and exit.
		stopRun()
		err = errors.Join(err, <-consumeErr)
		opsErr <- nil
	}
	stopOps()
	if serr := <-opsErr; serr != nil {
		err = errors.Join(err, serr)
	}
	log.Info("stopped")
	return err
}
