// Command notification is the notification service: it consumes MP3_QUEUE,
// records each MP3's outcome in MongoDB (the job done, the MP3's owner) and
// emails each user when their MP3 is ready or the conversion failed.
// PORT (8082) serves /healthz, /readyz and /metrics only.
package main

import (
	"context"
	"errors"
	"io"

	"mp3converter/internal/app"
	"mp3converter/internal/config"
	"mp3converter/internal/logging"
	"mp3converter/internal/notification"
)

var version = "dev"

func main() { app.Main("notification", version, run) }

func run(ctx context.Context, args []string, _ io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return errors.New("notification takes no arguments (configuration is read from the environment)")
	}
	cfg, err := config.Load[notification.Config]()
	if err != nil {
		return err
	}
	log, err := logging.New(stdout, "notification", version, cfg.LogLevel)
	if err != nil {
		return err
	}
	return notification.Run(ctx, cfg, log)
}
