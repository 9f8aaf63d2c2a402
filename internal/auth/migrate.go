package auth

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	migratemysql "github.com/golang-migrate/migrate/v4/database/mysql"
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

// migrations are the schema's versioned steps, applied by Migrate (the
// `auth migrate` command) and never by the server: the server needs only
// SELECT and UPDATE on the user table.
//
//go:embed migrations/*.sql
var migrations embed.FS

// SchemaVersion is the migration the server needs.
const SchemaVersion = 2

// MigrationsTable records which migrations ran (golang-migrate's table).
const MigrationsTable = "schema_migrations"

// Migrate brings the database's schema up to SchemaVersion: it creates the
// database when it is missing and the account may, then applies the
// migrations not yet applied, holding a MySQL advisory lock so that several
// replicas (init containers) may run it at once. It returns the versions
// before and after (0: none). It needs CREATE and ALTER on the database.
func Migrate(ctx context.Context, c MySQLConfig) (from, to uint, err error) {
	if err := ensureDatabase(ctx, c); err != nil {
		return 0, 0, err
	}
	db, err := sql.Open("mysql", c.dsn(true, true)) // the migrations hold several statements each
	if err != nil {
		return 0, 0, fmt.Errorf("open mysql: %w", err)
	}
	defer db.Close()
	src, err := iofs.New(migrations, "migrations")
	if err != nil {
		return 0, 0, fmt.Errorf("read migrations: %w", err)
	}
	driver, err := migratemysql.WithInstance(db, &migratemysql.Config{MigrationsTable: MigrationsTable})
	if err != nil {
		return 0, 0, fmt.Errorf("prepare migrations: %w", translate(err))
	}
	m, err := migrate.NewWithInstance("iofs", src, "mysql", driver)
	if err != nil {
		return 0, 0, fmt.Errorf("prepare migrations: %w", err)
	}
	defer m.Close()
	before, dirty, err := m.Version()
	switch {
	case errors.Is(err, migrate.ErrNilVersion):
		before = 0
	case err != nil:
		return 0, 0, fmt.Errorf("read schema version: %w", translate(err))
	case dirty:
		return before, before, fmt.Errorf("migration %d stopped half-way earlier (%s says dirty): "+
			"check the user table by hand, then UPDATE %s SET dirty = 0 and run auth migrate again",
			before, MigrationsTable, MigrationsTable)
	}
	// Another replica migrating at the same moment holds the lock; its
	// work is quick, so wait for it a few times.
	for attempt := 1; ; attempt++ {
		err = m.Up()
		locked := errors.Is(err, database.ErrLocked) || errors.Is(err, migrate.ErrLockTimeout)
		if !locked || attempt == 5 {
			break
		}
		select {
		case <-ctx.Done():
			return before, before, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return before, before, fmt.Errorf("migrate schema from version %d: %w", before, translate(err))
	}
	after, _, err := m.Version()
	if err != nil {
		return before, before, fmt.Errorf("read schema version: %w", translate(err))
	}
	return before, after, nil
}

// ensureDatabase creates the database when it is missing; an account without
// the right to do so gets the original's behaviour (the operator creates it).
func ensureDatabase(ctx context.Context, c MySQLConfig) error {
	db, err := sql.Open("mysql", c.dsn(false, false))
	if err != nil {
		return fmt.Errorf("open mysql: %w", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("connect to mysql %s:%d: %w", c.Host, c.Port, translate(err))
	}
	var n int
	err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", c.DB).Scan(&n)
	if err != nil || n > 0 {
		return nil // let the real connection report problems
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(c.DB)); err != nil {
		return fmt.Errorf("database %q does not exist and cannot be created: %w", c.DB, err)
	}
	return nil
}

func quoteIdent(s string) string {
	out := []byte{'`'}
	for i := 0; i < len(s); i++ {
		if s[i] == '`' {
			out = append(out, '`')
		}
		out = append(out, s[i])
	}
	return string(append(out, '`'))
}

// HashReport is what HashPlaintextPasswords did.
type HashReport struct {
	Hashed  int      // plaintext rows now holding a bcrypt hash
	Skipped []string // emails whose plaintext bcrypt cannot take (over 72 bytes, or empty)
}

// HashPlaintextPasswords replaces every plaintext password (the original's
// rows, and passwords reset by hand) with a bcrypt hash at cost: the
// deliberate step that commits to this auth, after which the original
// auth can no longer log those users in. A row changed meanwhile is left
// to its new value. Safe to run again; it hashes on every CPU.
func HashPlaintextPasswords(ctx context.Context, s *Store, cost int) (HashReport, error) {
	var rep HashReport
	var after int64
	for {
		page, err := s.Users(ctx, after, 500)
		if err != nil {
			return rep, err
		}
		if len(page) == 0 {
			return rep, nil
		}
		after = page[len(page)-1].ID
		var plain []User
		for _, u := range page {
			if !IsHash(u.Password) {
				plain = append(plain, u)
			}
		}
		hashed, skipped, err := hashAll(ctx, s, plain, cost)
		rep.Hashed += hashed
		rep.Skipped = append(rep.Skipped, skipped...)
		if err != nil {
			return rep, err
		}
	}
}

func hashAll(ctx context.Context, s *Store, users []User, cost int) (hashed int, skipped []string, err error) {
	type result struct {
		u   User
		err error
	}
	work := make(chan User)
	results := make(chan result, len(users)) // workers never block on a caller gone
	workers := min(runtime.GOMAXPROCS(0), max(len(users), 1))
	for range workers {
		go func() {
			for u := range work {
				h, err := HashPassword(u.Password, cost)
				if err == nil {
					err = s.UpgradePassword(ctx, u.ID, u.Password, h)
				}
				results <- result{u, err}
			}
		}()
	}
	go func() {
		defer close(work)
		for _, u := range users {
			select {
			case work <- u:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range users {
		var r result
		select {
		case r = <-results:
		case <-ctx.Done():
			return hashed, skipped, ctx.Err()
		}
		switch {
		case errors.Is(r.err, ErrPasswordRules):
			skipped = append(skipped, r.u.Email)
		case r.err != nil && err == nil:
			err = r.err
		case r.err == nil:
			hashed++
		}
	}
	return hashed, skipped, err
}
