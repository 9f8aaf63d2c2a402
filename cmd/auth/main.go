// Command auth is the auth service: POST /login and POST /validate on PORT
// (5000), users in MySQL. Operator commands beside the server:
//
//	auth migrate                          brings the schema up to date (CREATE, ALTER)
//	auth user add --email E [--admin]     creates or resets a user, password on stdin
//	auth user migrate-passwords           hashes every plaintext password (commits to bcrypt)
package main

import (
	"context"
	"io"

	"mp3converter/internal/app"
	"mp3converter/internal/auth"
	"mp3converter/internal/config"
	"mp3converter/internal/logging"
)

var version = "dev"

func main() { app.Main("auth", version, run) }

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return auth.Command(ctx, args, stdin, stdout, version)
	}
	cfg, err := config.Load[auth.Config]()
	if err != nil {
		return err
	}
	log, err := logging.New(stdout, "auth", version, cfg.LogLevel)
	if err != nil {
		return err
	}
	return auth.Run(ctx, cfg, log)
}
