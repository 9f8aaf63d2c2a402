package notification

import (
	"context"
	"log/slog"

	"mp3converter/internal/app"
	"mp3converter/internal/downloadlink"
	"mp3converter/internal/httpx"
	"mp3converter/internal/mq"
)

// Run is the notification process: it opens SMTP, MongoDB and the broker,
// consumes MP3_QUEUE and serves the ops endpoints on PORT until ctx ends;
// then the email in flight finishes while the ops port still answers.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg = cfg.Resolved()
	log.Info("starting", "port", cfg.Port, "mp3_queue", cfg.MP3Queue, "mongodb_videos_db", cfg.VideosDB,
		"mongodb_mp3s_db", cfg.MP3sDB, "smtp_host", cfg.SMTP.Host,
		"smtp_port", cfg.SMTP.Port, "smtp_tls", cfg.SMTP.TLS, "smtp_username", cfg.SMTP.Username,
		"smtp_password", cfg.SMTP.Password, "mail_from", cfg.MailFrom, "public_url", cfg.PublicURL,
		"download_links", cfg.DownloadLinkKey != "", "download_link_ttl", cfg.DownloadLinkTTL,
		"concurrency", cfg.Concurrency, "prefetch", cfg.Prefetch, "max_attempts", cfg.MaxAttempts)
	if cfg.PublicURL == "" {
		log.Warn("PUBLIC_URL is not set: the emails carry no download link")
	}
	if cfg.SMTP.TLS == TLSNone {
		log.Warn("SMTP_TLS=none: emails travel unencrypted (fine for a local relay only)")
	}

	sender, err := NewSMTP(cfg.SMTP, cfg.MailFrom)
	if err != nil {
		return err
	}
	composer, err := NewComposer(cfg.PublicURL, cfg.MailFrom)
	if err != nil {
		return err
	}
	switch key := cfg.DownloadLinkKey.Reveal(); {
	case key == "":
	case cfg.PublicURL == "":
		log.Warn("DOWNLOAD_LINK_KEY is set but PUBLIC_URL is not: the emails carry no download link")
	default:
		signer, err := downloadlink.NewSigner(key)
		if err != nil {
			return err
		}
		if err := composer.SignLinks(signer, cfg.DownloadLinkTTL); err != nil {
			return err
		}
	}
	stores, err := cfg.StoreConfig.Open("notification")
	if err != nil {
		return err
	}
	defer stores.Close()
	recorder, err := NewRecorder(stores.Jobs, stores.MP3s)
	if err != nil {
		return err
	}
	reg := httpx.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	svc, err := New(sender, composer, recorder, Options{
		Log: log, Metrics: metrics,
	})
	if err != nil {
		return err
	}
	broker, err := cfg.BrokerConfig.Connect("notification", reg, log,
		// Declared at every connect (as Consume does), so that a producer
		// (the original's converter) finds the queue whatever starts first.
		cfg.MP3Queue, mq.DeadLetterQueue(cfg.MP3Queue))
	if err != nil {
		return err
	}
	defer broker.Close()
	// The MP3s of the original's converter finish their jobs here.
	stores.Jobs.AnnounceOn(broker.Announce, log)

	// Readiness is the broker and MongoDB (every success message is
	// recorded there before its email), not SMTP: probing Gmail on every
	// /readyz would make the pod flap with Gmail's rate limits, and a failed
	// send is retried anyway.
	ops := httpx.NewOps(reg)
	ops.AddCheck("mongodb", stores.Ping)
	ops.AddCheck("rabbitmq", broker.Ready)
	srv, err := app.OpsServer(cfg.Port, ops, log)
	if err != nil {
		return err
	}
	// Intake: the consumer; the email in flight finishes within
	// SHUTDOWN_TIMEOUT while the ops port still answers.
	return app.Serve(ctx, log, nil, srv, func(ctx context.Context) error {
		return broker.Consume(ctx, cfg.MP3Queue, mq.ConsumeOptions{
			Concurrency: cfg.Concurrency, Prefetch: cfg.Prefetch, MaxAttempts: cfg.MaxAttempts, MaxRedeliveries: cfg.MaxRedeliveries,
			RetryBackoff: cfg.RetryBackoff, ShutdownTimeout: cfg.ShutdownTimeout, Log: log,
		}, svc.Handle)
	})
}
