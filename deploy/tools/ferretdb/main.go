// Command ferretdb runs the embeddable FerretDB (pinned in ../go.mod) as a
// MongoDB wire-protocol server for the local stack and tests.
//
// The upstream cmd/ferretdb panics when built with `go install` because the
// module lacks build/version/version.txt; the embeddable package does not.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// FerretDB takes a few seconds to drain; a second signal stops it at once.
	go func() { <-ctx.Done(); stop() }()

	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ferretdb", flag.ContinueOnError)
	listen := fs.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	// The URL may hold a password: FERRETDB_POSTGRESQL_URL keeps it off the command line.
	pgURL := fs.String("postgresql-url", os.Getenv("FERRETDB_POSTGRESQL_URL"),
		"PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:5432/ferretdb [$FERRETDB_POSTGRESQL_URL]")
	sqliteURL := fs.String("sqlite-url", "", "SQLite directory URL, e.g. file:data/ (used when -postgresql-url is empty)")
	verbose := fs.Bool("verbose", false, "log warnings and errors to stderr (slows FerretDB down)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	cfg := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		// A text logger halves throughput: discard unless asked.
		Logger: slog.New(slog.DiscardHandler),
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	switch {
	case *pgURL != "":
		cfg.Handler, cfg.PostgreSQLURL = "postgresql", *pgURL
	case *sqliteURL != "":
		cfg.Handler, cfg.SQLiteURL = "sqlite", *sqliteURL
	default:
		return errors.New("one of -postgresql-url or -sqlite-url is required")
	}

	f, err := ferretdb.New(cfg)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	fmt.Fprintln(os.Stderr, "ferretdb: serving", f.MongoDBURI())
	return <-done
}
