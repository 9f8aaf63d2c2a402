// Package gateway is the public HTTP entry point: it forwards logins to
// auth, validates every protected request with auth, streams uploads into
// GridFS and queues their conversion, lists the caller's jobs, and streams
// MP3s back.
package gateway

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/downloadlink"
	"mp3converter/internal/httpx"
	"mp3converter/internal/logging"
	"mp3converter/internal/mongodb"
	"mp3converter/internal/mq"
)

// Config is the gateway's configuration. AUTH_SVC_ADDRESS and VIDEO_QUEUE
// are the original's names.
type Config struct {
	Port int `env:"PORT" envDefault:"8080"`
	// OpsPort serves /readyz and /metrics (and /healthz), off the public
	// port that the Ingress exposes.
	OpsPort int `env:"OPS_PORT" envDefault:"9080"`
	logging.Config

	AuthAddr    string        `env:"AUTH_SVC_ADDRESS" envDefault:"auth:5000"`
	AuthTimeout time.Duration `env:"AUTH_TIMEOUT" envDefault:"3s"`
	// AuthLoginTimeout bounds a forwarded login: bcrypt work queues in
	// auth under a burst of logins, so it is longer than AUTH_TIMEOUT.
	AuthLoginTimeout time.Duration `env:"AUTH_LOGIN_TIMEOUT" envDefault:"10s"`

	mongodb.StoreConfig
	mq.BrokerConfig
	VideoQueue string `env:"VIDEO_QUEUE" envDefault:"video"`

	MaxUploadBytes int64 `env:"MAX_UPLOAD_BYTES" envDefault:"2147483648"`
	// UserQuotaBytes bounds one user's stored videos and MP3s (0: none);
	// UserMaxActive their conversions queued or converting (0: none).
	UserQuotaBytes int64 `env:"USER_QUOTA_BYTES" envDefault:"10737418240"`
	UserMaxActive  int   `env:"USER_MAX_ACTIVE" envDefault:"10"`
	// PublicURL is the gateway's base URL as its clients reach it
	// (https://mp3.example.com): when set, the links the gateway answers
	// (GET /jobs' next page) are absolute; empty: relative.
	PublicURL string `env:"PUBLIC_URL"`
	// DownloadLinkKey verifies the signed one-click download links in the
	// emails (the notification's DOWNLOAD_LINK_KEY, the same value); empty:
	// such links are refused with 403. Replacing it revokes every link.
	DownloadLinkKey config.Secret `env:"DOWNLOAD_LINK_KEY"`
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// (an ingress controller): CIDRs, "private" or "none".
	TrustedProxies httpx.Proxies `env:"TRUSTED_PROXIES" envDefault:"private"`

	// UploadTimeout bounds one upload (reading the body and storing it);
	// PublishTimeout the wait for the broker's confirm; RequestTimeout
	// every other request.
	UploadTimeout  time.Duration `env:"UPLOAD_TIMEOUT" envDefault:"1h"`
	PublishTimeout time.Duration `env:"PUBLISH_TIMEOUT" envDefault:"10s"`
	// RequestTimeout also bounds reading any request but an authenticated
	// upload (a body trickled for ever holds no connection).
	RequestTimeout  time.Duration `env:"REQUEST_TIMEOUT" envDefault:"30s"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"25s"`
	// DownloadIdleTimeout drops a download whose client stopped reading.
	DownloadIdleTimeout time.Duration `env:"DOWNLOAD_IDLE_TIMEOUT" envDefault:"2m"`
	// ResumableUploadTTL: a resumable upload (tus, /uploads/) that receives
	// nothing for this long expires; the converter's retention sweeper
	// removes its chunks.
	ResumableUploadTTL time.Duration `env:"RESUMABLE_UPLOAD_TTL" envDefault:"24h"`
}

// Validate reports every bad value, each error naming its variable.
func (c Config) Validate() error {
	errs := []error{config.CheckPort("PORT", c.Port), config.CheckPort("OPS_PORT", c.OpsPort), c.StoreConfig.Validate(),
		config.CheckBaseURL("PUBLIC_URL", c.PublicURL), downloadlink.CheckKey("DOWNLOAD_LINK_KEY", c.DownloadLinkKey.Reveal())}
	bad := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	bad(c.Port != c.OpsPort || c.Port == 0, "PORT and OPS_PORT must differ (both are %d)", c.Port)
	bad(strings.TrimSpace(c.AuthAddr) != "", "AUTH_SVC_ADDRESS is empty")
	bad(strings.TrimSpace(c.VideoQueue) != "", "VIDEO_QUEUE is empty")
	bad(c.MaxUploadBytes > 0, "MAX_UPLOAD_BYTES must be > 0")
	bad(c.UserQuotaBytes >= 0, "USER_QUOTA_BYTES must be ≥ 0 (0: no quota)")
	bad(c.UserMaxActive >= 0, "USER_MAX_ACTIVE must be ≥ 0 (0: no limit)")
	for name, d := range map[string]time.Duration{"AUTH_TIMEOUT": c.AuthTimeout, "AUTH_LOGIN_TIMEOUT": c.AuthLoginTimeout,
		"UPLOAD_TIMEOUT": c.UploadTimeout, "PUBLISH_TIMEOUT": c.PublishTimeout, "REQUEST_TIMEOUT": c.RequestTimeout,
		"SHUTDOWN_TIMEOUT": c.ShutdownTimeout, "DOWNLOAD_IDLE_TIMEOUT": c.DownloadIdleTimeout,
		"RESUMABLE_UPLOAD_TTL": c.ResumableUploadTTL} {
		bad(d > 0, "%s %s: want a positive duration", name, d)
	}
	return errors.Join(errs...)
}
