// Command converter consumes VIDEO_QUEUE, converts each video's audio to MP3
// with ffmpeg, stores it in GridFS "mp3s" and announces it on MP3_QUEUE. Its
// PORT (8081) serves only /healthz, /readyz and /metrics.
package main

import (
	"context"
	"errors"
	"io"

	"mp3converter/internal/app"
	"mp3converter/internal/config"
	"mp3converter/internal/converter"
	"mp3converter/internal/logging"
)

var version = "dev"

func main() { app.Main("converter", version, run) }

func run(ctx context.Context, args []string, _ io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return errors.New("converter takes no arguments (configuration is read from the environment)")
	}
	cfg, err := config.Load[converter.Config]()
	if err != nil {
		return err
	}
	log, err := logging.New(stdout, "converter", version, cfg.LogLevel)
	if err != nil {
		return err
	}
	return converter.Run(ctx, cfg, log)
}
