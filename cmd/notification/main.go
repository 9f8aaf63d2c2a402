// Command notification is the notification service: it consumes MP3_QUEUE,
// records each MP3's outcome in MongoDB (the job done, the MP3's owner) and
// emails each user when their MP3 is ready or the conversion failed.
// PORT (8082) serves /healthz, /readyz and /metrics only.
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

	"mp3converter/internal/config"
	"mp3converter/internal/httpx"
	"mp3converter/internal/logging"
	"mp3converter/internal/mongodb"
	"mp3converter/internal/mq"
	"mp3converter/internal/notification"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "notification:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("notification", flag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(version)
		return nil
	}
	cfg, err := config.Load[notification.Config]()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log, err := logging.New(os.Stdout, "notification", version, cfg.LogLevel)
	if err != nil {
		return err
	}
	log.Info("starting", "port", cfg.Port, "mp3_queue", cfg.MP3Queue, "mongodb_videos_db", cfg.VideosDB,
		"mongodb_mp3s_db", cfg.MP3sDB, "smtp_host", cfg.SMTP.Host,
		"smtp_port", cfg.SMTP.Port, "smtp_tls", cfg.SMTP.TLS, "smtp_username", cfg.SMTP.Username,
		"smtp_password", cfg.SMTP.Password, "mail_from", cfg.MailFrom, "public_url", cfg.PublicURL,
		"concurrency", cfg.Concurrency, "prefetch", cfg.Prefetch, "max_attempts", cfg.MaxAttempts)
	if cfg.PublicURL == "" {
		log.Warn("PUBLIC_URL is not set: the emails carry no download link")
	}
	if cfg.SMTP.TLS == notification.TLSNone {
		log.Warn("SMTP_TLS=none: emails travel unencrypted (fine for a local relay only)")
	}

	sender, err := notification.NewSMTP(cfg.SMTP, cfg.MailFrom)
	if err != nil {
		return err
	}
	composer, err := notification.NewComposer(cfg.PublicURL, cfg.MailFrom)
	if err != nil {
		return err
	}
	stores, err := mongodb.Open(cfg.MongoURI.Reveal(), cfg.VideosDB, cfg.MP3sDB, "notification")
	if err != nil {
		return err
	}
	defer stores.Close()
	recorder, err := notification.NewRecorder(stores.Jobs, stores.MP3s)
	if err != nil {
		return err
	}
	reg := httpx.NewRegistry()
	mqMetrics, err := mq.NewMetrics(reg)
	if err != nil {
		return err
	}
	metrics, err := notification.NewMetrics(reg)
	if err != nil {
		return err
	}
	svc, err := notification.New(sender, composer, recorder, notification.Options{
		Log: log, Metrics: metrics, MaxAttempts: cfg.MaxAttempts,
	})
	if err != nil {
		return err
	}
	broker, err := mq.New(cfg.RabbitMQURL.Reveal(), log, mq.Options{ConnectionName: "notification", Metrics: mqMetrics,
		// Declared at every connect (as Consume does), so that a producer
		// (the original's converter) finds the queue whatever starts first.
		Declare: []string{cfg.MP3Queue, mq.DeadLetterQueue(cfg.MP3Queue)}})
	if err != nil {
		return err
	}
	defer broker.Close()

	// Readiness is the broker and MongoDB (every success message is
	// recorded there before its email), not SMTP: probing Gmail on every
	// /readyz would make the pod flap with Gmail's rate limits, and a failed
	// send is retried anyway.
	ops := httpx.NewOps(reg)
	ops.AddCheck("mongodb", stores.Ping)
	ops.AddCheck("rabbitmq", broker.Ready)
	srv, err := httpx.Listen(":"+strconv.Itoa(cfg.Port), httpx.OpsHandler(ops, log), httpx.ServerConfig{
		ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, ShutdownTimeout: 5 * time.Second,
	}, log)
	if err != nil {
		return err
	}

	// Whichever stops first (a signal, or a failure) stops the other; the
	// consumer lets the email in flight finish within SHUTDOWN_TIMEOUT.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ctx) }()
	go func() {
		errc <- broker.Consume(ctx, cfg.MP3Queue, mq.ConsumeOptions{
			Concurrency: cfg.Concurrency, Prefetch: cfg.Prefetch, MaxAttempts: cfg.MaxAttempts, MaxRedeliveries: cfg.MaxRedeliveries,
			RetryBackoff: cfg.RetryBackoff, ShutdownTimeout: cfg.ShutdownTimeout, Log: log,
		}, svc.Handle)
	}()
	err = <-errc
	cancel()
	err = errors.Join(err, <-errc)
	log.Info("stopped", "err", err)
	return err
}
