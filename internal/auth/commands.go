package auth

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/logging"
)

// Command runs an operator command beside the server:
//
//	auth migrate                          brings the schema up to date (CREATE, ALTER)
//	auth user add --email E [--admin]     creates or resets a user, password on stdin
//	auth user migrate-passwords           hashes every plaintext password (commits to bcrypt)
func Command(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, version string) error {
	switch cmd := strings.Join(args[:min(len(args), 2)], " "); cmd {
	case "migrate":
		return migrateCommand(ctx, stdout, version)
	case "user add":
		return userAdd(ctx, args[2:], stdin, stdout)
	case "user migrate-passwords":
		return migratePasswords(ctx, stdout)
	}
	return fmt.Errorf("unknown command %q (want: auth [-version] | auth migrate | "+
		"auth user add --email E [--admin] | auth user migrate-passwords)", strings.Join(args, " "))
}

// openStore waits up to a minute for MySQL (it may start after us), then
// gives up so the orchestrator restarts the pod with a clear message. A
// schema that lacks what the server reads fails at once (ErrSchema names
// what is missing).
func openStore(ctx context.Context, mc MySQLConfig, log *slog.Logger) (*Store, error) {
	return retryMySQL(ctx, log, func() (*Store, error) { return OpenStore(ctx, mc) })
}

// retryMySQL calls f until it succeeds, fails with anything but
// ErrUnavailable, or a minute has passed.
func retryMySQL[T any](ctx context.Context, log *slog.Logger, f func() (T, error)) (T, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		v, err := f()
		if err == nil || !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
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

// migrateCommand brings the schema up to date; an init container runs it before
// the server starts (see manifests/auth).
func migrateCommand(ctx context.Context, stdout io.Writer, version string) error {
	cfg, err := config.Load[DBConfig]()
	if err != nil {
		return err
	}
	log, err := logging.New(stdout, "auth", version, "info")
	if err != nil {
		return err
	}
	type versions struct{ from, to uint }
	v, err := retryMySQL(ctx, log, func() (versions, error) {
		from, to, err := Migrate(ctx, cfg.MySQL())
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
	cfg, err := config.Load[DBConfig]()
	if err != nil {
		return err
	}
	store, err := OpenStore(ctx, cfg.MySQL())
	if err != nil {
		return fmt.Errorf("user migrate-passwords: %w", err)
	}
	defer store.Close()
	rep, err := HashPlaintextPasswords(ctx, store, cfg.BcryptCost)
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
	cfg, err := config.Load[DBConfig]()
	if err != nil {
		return err
	}
	hash, err := HashPassword(password, cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	store, err := OpenStore(ctx, cfg.MySQL())
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
