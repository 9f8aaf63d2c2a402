package converter

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"

	"mp3converter/internal/app"
	"mp3converter/internal/httpx"
	"mp3converter/internal/mq"
	"mp3converter/internal/retention"
)

// Run is the converter process: it checks ffmpeg, opens MongoDB and the
// broker, consumes VIDEO_QUEUE, runs the retention sweeper and serves the
// ops endpoints on PORT until ctx ends; then the conversions in flight
// finish (or are requeued) while the ops port still answers.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	opt, err := cfg.Options()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	for _, bin := range []string{opt.FFmpegPath, opt.FFprobePath} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("FFMPEG_PATH/FFPROBE_PATH: %w", err)
		}
	}
	log.Info("starting", "port", cfg.Port, "video_queue", opt.VideoQueue, "mp3_queue", opt.MP3Queue,
		"concurrency", opt.Consume.Concurrency, "bitrate", opt.Bitrate, "max_duration", opt.MaxDuration.String(),
		"scratch_dir", opt.ScratchDir, "scratch_limit_bytes", opt.ScratchLimit, "stream_faststart", opt.StreamFaststart, "seekable_input", opt.SeekableInput,
		"job_timeout", opt.JobTimeout.String(), "job_lease_ttl", opt.LeaseTTL.String(),
		"broker_consumer_timeout", cfg.BrokerConsumerTimeout.String())
	if opt.Consume.Prefetch > opt.Consume.Concurrency && cfg.BrokerConsumerTimeout > 0 {
		// Config.Options checked one delivery's JOB_TIMEOUT against the
		// broker's; a prefetched one also waits behind those in flight.
		log.Warn("PREFETCH is above CONCURRENCY: a prefetched message waits unacked behind the conversions in flight "+
			"and may outlast RabbitMQ's consumer_timeout, which hands it to another converter",
			"prefetch", opt.Consume.Prefetch, "concurrency", opt.Consume.Concurrency, "broker_consumer_timeout", cfg.BrokerConsumerTimeout.String())
	}
	if opt.ScratchLimit > 0 && opt.ScratchLimit < opt.MaxInputBytes {
		log.Warn("SCRATCH_LIMIT_BYTES is below MAX_INPUT_BYTES: videos between the two that need a temporary file fail",
			"scratch_limit_bytes", opt.ScratchLimit, "max_input_bytes", opt.MaxInputBytes)
	}

	stores, err := cfg.StoreConfig.Open("converter")
	if err != nil {
		return err
	}
	defer stores.Close()

	reg := httpx.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	broker, err := cfg.BrokerConfig.Connect("converter", reg, log,
		// Declared at every connect, so that a consumer (the original's
		// notification) finds MP3_QUEUE before the first conversion.
		opt.VideoQueue, mq.DeadLetterQueue(opt.VideoQueue), opt.MP3Queue)
	if err != nil {
		return err
	}
	defer broker.Close()

	stores.Jobs.AnnounceOn(broker.Announce, log)
	svc, err := New(Deps{Videos: stores.Videos, MP3s: stores.MP3s, Jobs: stores.Jobs, Publisher: broker,
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
	srv, err := app.OpsServer(cfg.Port, ops, log)
	if err != nil {
		return err
	}
	// Intake: the consumer (SHUTDOWN_TIMEOUT to finish, then ffmpeg is
	// killed and the messages requeued) and the sweeper.
	return app.Serve(ctx, log, nil, srv, func(ctx context.Context) error { return svc.Run(ctx, broker) },
		func(ctx context.Context) error { sweeper.Run(ctx); return nil })
}
