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
)

var version = "dev"

func main() { app.Main("auth", version, run) }

// run is the server, or an operator command when there are arguments.
func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return auth.Command(ctx, args, stdin, stdout, version)
	}
	return app.Start(ctx, "auth", version, stdout, auth.Run)
}
