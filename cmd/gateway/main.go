// Command gateway is the public entry point on PORT (8080): POST /login,
// POST /upload, GET /download, GET /jobs, GET /jobs/{id} and the web page;
// OPS_PORT (9080) serves /healthz, /readyz and /metrics.
package main

import (
	"context"
	"errors"
	"io"

	"mp3converter/internal/app"
	"mp3converter/internal/config"
	"mp3converter/internal/gateway"
	"mp3converter/internal/logging"
)

var version = "dev"

func main() { app.Main("gateway", version, run) }

func run(ctx context.Context, args []string, _ io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return errors.New("gateway takes no arguments (configuration is read from the environment)")
	}
	cfg, err := config.Load[gateway.Config]()
	if err != nil {
		return err
	}
	log, err := logging.New(stdout, "gateway", version, cfg.LogLevel)
	if err != nil {
		return err
	}
	return gateway.Run(ctx, cfg, log)
}
