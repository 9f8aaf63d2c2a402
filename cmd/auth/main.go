// Command auth is the auth service: POST /login and POST /validate on PORT
// (5000), users in MySQL. Operator commands beside the server:
//
//	auth migrate                          brings the schema up to date (CREATE, ALTER)
//	auth user add --email E [--admin]     creates or resets a user, password on stdin
//	auth user migrate-passwords           hashes every plaintext password (commits to bcrypt)
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mp3converter/internal/auth"
	"mp3converter/internal/config"
	"mp3converter/internal/httpx"
	"mp3converter/internal/logging"
	"mp3converter/internal/token"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("auth", flag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, version)
		return nil
	}
	switch cmd := strings.Join(fs.Args()[:min(fs.NArg(), 2)], " "); {
	case cmd == "":
	case cmd == "migrate":
		return migrate(ctx, stdout)
	case cmd == "user add":
		return userAdd(ctx, fs.Args()[2:], stdin, stdout)
	case cmd == "user migrate-passwords":
		return migratePasswords(ctx, stdout)
	default:
		return fmt.Errorf("unknown command %q (want: auth [-version] | auth migrate | "+
			"auth user add --email E [--admin] | auth user migrate-passwords)", strings.Join(fs.Args(), " "))
	}

	cfg, err := config.Load[auth.Config]()
	if err != nil {
		return err
	}
	log, err := logging.New(stdout, "auth", version, cfg.LogLevel)
	if err != nil {
		return err
	}
	log.Info("starting", "port", cfg.Port, "mysql_host", cfg.DB.MySQLHost, "mysql_port", cfg.DB.MySQLPort,
		"mysql_db", cfg.DB.MySQLDB, "mysql_user", cfg.DB.MySQLUser, "jwt_ttl", cfg.JWTTTL.String(),
		"legacy_admin_claim", cfg.LegacyAdminClaim, "keep_plaintext_passwords", cfg.DB.KeepPlaintextPasswords)
	shared, err := cfg.SharedPeers()
	if err != nil {
		return err
	}

	store, err := openStore(ctx, cfg.DB.MySQL(), log)
	if err != nil {
		return err
	}
	defer store.Close()
	tokens, err := token.New(cfg.JWTSecret.Reveal(), cfg.JWTTTL, token.LegacyAdminClaim(cfg.LegacyAdminClaim))
	if err != nil {
		return err
	}
	authn, err := auth.NewAuthenticator(store, tokens,
		auth.PasswordOptions{Cost: cfg.DB.BcryptCost, KeepPlaintext: cfg.DB.KeepPlaintextPasswords}, log)
	if err != nil {
		return err
	}
	ops := httpx.NewOps(httpx.NewRegistry())
	ops.AddCheck("mysql", store.Ping)
	h := auth.NewServer(authn, tokens, ops, log, auth.ServerOptions{
		RequestTimeout: cfg.RequestTimeout, LoginRate: cfg.LoginRate, LoginBurst: cfg.LoginBurst,
		AccountRate: cfg.LoginAccountRate, AccountBurst: cfg.LoginAccountBurst,
		TrustedProxies: cfg.TrustedProxies, SharedPeers: shared,
	})
	srv, err := httpx.Listen(":"+strconv.Itoa(cfg.Port), h, httpx.ServerConfig{
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, ShutdownTimeout: cfg.ShutdownTimeout,
	}, log)
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}

// openStore waits up to a minute for MySQL (it may start after us), then
// gives up so the orchestrator restarts the pod with a clear message. A
// schema that lacks what the server reads fails at once (ErrSchema names
// what is missing).
func openStore(ctx context.Context, mc auth.MySQLConfig, log *slog.Logger) (*auth.Store, error) {
	return retryMySQL(ctx, log, func() (*auth.Store, error) { return auth.OpenStore(ctx, mc) })
}

// retryMySQL calls f until it succeeds, fails with anything but
// ErrUnavailable, or a minute has passed.
func retryMySQL[T any](ctx context.Context, log *slog.Logger, f func() (T, error)) (T, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		v, err := f()
		if err == nil || !errors.Is(err, auth.ErrUnavailable) || time.Now().After(deadline) {
			return v, err
		}
		log.Warn("mysql not reachable yet, retrying", "err", err)
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// migrate brings the schema up to date; an init container runs it before
// the server starts (see manifests/auth).
func migrate(ctx context.Context, stdout io.Writer) error {
	cfg, err := config.Load[auth.DBConfig]()
	if err != nil {
		return err
	}
	log, err := logging.New(stdout, "auth", version, "info")
	if err != nil {
		return err
	}
	type versions struct{ from, to uint }
	v, err := retryMySQL(ctx, log, func() (versions, error) {
		from, to, err := auth.Migrate(ctx, cfg.MySQL())
		return versions{from, to}, err
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	log.Info("schema up to date", "mysql_db", cfg.MySQLDB, "from_version", v.from, "version", v.to)
	return nil
}

// migratePasswords hashes every plaintext password: after it the original
// auth can no longer log those users in.
func migratePasswords(ctx context.Context, stdout io.Writer) error {
	cfg, err := config.Load[auth.DBConfig]()
	if err != nil {
		return err
	}
	store, err := auth.OpenStore(ctx, cfg.MySQL())
	if err != nil {
		return fmt.Errorf("user migrate-passwords: %w", err)
	}
	defer store.Close()
	rep, err := auth.HashPlaintextPasswords(ctx, store, cfg.BcryptCost)
	fmt.Fprintf(stdout, "%d plaintext passwords replaced by bcrypt hashes\n", rep.Hashed)
	for _, e := range rep.Skipped {
		fmt.Fprintf(stdout, "left as it is (bcrypt takes 1 to 72 bytes; reset it with auth user add): %s\n", e)
	}
	if err != nil {
		return fmt.Errorf("user migrate-passwords: %w", err)
	}
	return nil
}

// userAdd creates or resets a user; the password is the first line of stdin.
func userAdd(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("auth user add", flag.ContinueOnError)
	email := fs.String("email", "", "the user's email address (their username)")
	admin := fs.Bool("admin", false, "the user may download any MP3")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *email == "" || !strings.Contains(*email, "@") || len(*email) > 255 {
		return errors.New("user add: --email must be an email address (at most 255 bytes)")
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("user add: read password from stdin: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return errors.New("user add: no password on stdin (pipe it in: echo 'secret' | auth user add --email ...)")
	}
	cfg, err := config.Load[auth.DBConfig]()
	if err != nil {
		return err
	}
	hash, err := auth.HashPassword(password, cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	store, err := auth.OpenStore(ctx, cfg.MySQL())
	if err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	defer store.Close()
	if err := store.PutUser(ctx, *email, hash, *admin); err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	fmt.Fprintf(stdout, "user %s saved (admin: %v)\n", *email, *admin)
	return nil
}
