package gateway

import (
	"context"
	"log/slog"
	"strconv"

	"mp3converter/internal/app"
	"mp3converter/internal/authclient"
	"mp3converter/internal/downloadlink"
	"mp3converter/internal/httpx"
)

// Run is the gateway process: it opens auth's client, MongoDB and the
// broker, serves PORT and OPS_PORT until ctx ends, then drains uploads
// (SHUTDOWN_TIMEOUT) while the ops port still answers.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	log.Info("starting", "port", cfg.Port, "ops_port", cfg.OpsPort, "auth", cfg.AuthAddr, "video_queue", cfg.VideoQueue,
		"max_upload_bytes", cfg.MaxUploadBytes, "download_links", cfg.DownloadLinkKey != "")
	var links *downloadlink.Signer
	if key := cfg.DownloadLinkKey.Reveal(); key != "" {
		var err error
		if links, err = downloadlink.NewSigner(key); err != nil {
			return err
		}
	} else {
		log.Info("DOWNLOAD_LINK_KEY is not set: signed download links are refused (403)")
	}
	authc, err := authclient.New(cfg.AuthAddr, cfg.AuthTimeout, cfg.AuthLoginTimeout)
	if err != nil {
		return err
	}
	stores, err := cfg.StoreConfig.Open("gateway")
	if err != nil {
		return err
	}
	defer stores.Close()

	reg := httpx.NewRegistry()
	broker, err := cfg.BrokerConfig.Connect("gateway", reg, log,
		// Declared at every connect, so that a consumer (the original's
		// converter) finds the queue before the first upload.
		cfg.VideoQueue)
	if err != nil {
		return err
	}
	defer broker.Close()

	stores.Jobs.AnnounceOn(broker.Announce, log)
	ops := httpx.NewOps(reg)
	ops.AddCheck("mongodb", stores.Ping)
	ops.AddCheck("rabbitmq", broker.Ready)
	ops.AddCheck("auth", authc.Ready)
	h := NewServer(Deps{Auth: authc, Videos: stores.Videos, MP3s: stores.MP3s, Jobs: stores.Jobs, Expired: stores.Expired,
		Publisher: broker, Partials: stores.Videos, Ops: ops, Log: log}, Options{
		VideoQueue: cfg.VideoQueue, MaxUploadBytes: cfg.MaxUploadBytes, UploadTimeout: cfg.UploadTimeout,
		PublishTimeout: cfg.PublishTimeout, RequestTimeout: cfg.RequestTimeout,
		DownloadIdleTimeout: cfg.DownloadIdleTimeout, TrustedProxies: cfg.TrustedProxies,
		UserQuotaBytes: cfg.UserQuotaBytes, UserMaxActive: cfg.UserMaxActive, PublicURL: cfg.PublicURL,
		Links: links, ResumableLifetime: cfg.ResumableUploadTTL,
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
	srv.OnShutdown(h.CloseStreams)
	opsSrv, err := app.OpsServer(cfg.OpsPort, ops, log)
	if err != nil {
		return err
	}
	go func() { _ = h.ListenForJobs(ctx, broker.Listen) }()
	return app.Serve(ctx, log, srv, opsSrv)
}
