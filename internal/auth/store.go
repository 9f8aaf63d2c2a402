package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Sentinel errors of the user store.
var (
	ErrNotFound    = errors.New("user not found")
	ErrUnavailable = errors.New("user database unavailable")
)

// Password schemes stored in user.password_scheme.
const (
	schemePlain  = "plain" // the original's rows: the password column is the password
	schemeBcrypt = "bcrypt"
)

// User is one row of the original's `user` table plus the columns this port adds.
type User struct {
	ID       int64
	Email    string
	Password string // a bcrypt hash, or plaintext for legacy rows
	Scheme   string
	Admin    bool
}

// MySQLConfig locates the database.
type MySQLConfig struct {
	Host, User, Password, DB string
	Port                     int
	Timeout                  time.Duration // per statement
}

// Store keeps users in MySQL, in the original's schema.
type Store struct {
	db      *sql.DB
	timeout time.Duration
}

func (c MySQLConfig) dsn(withDB bool) string {
	mc := mysql.NewConfig()
	mc.User, mc.Passwd = c.User, c.Password
	mc.Net, mc.Addr = "tcp", net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	if withDB {
		mc.DBName = c.DB
	}
	mc.Timeout = 5 * time.Second
	mc.ReadTimeout = 30 * time.Second
	mc.WriteTimeout = 30 * time.Second
	mc.Params = map[string]string{"charset": "utf8mb4"}
	return mc.FormatDSN()
}

// OpenStore connects, creates the database if it is missing and the account
// may, and brings the schema up to date. It does not wait for MySQL: callers
// retry (see cmd/auth).
func OpenStore(ctx context.Context, c MySQLConfig) (*Store, error) {
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Second
	}
	if err := ensureDatabase(ctx, c); err != nil {
		return nil, err
	}
	db, err := sql.Open("mysql", c.dsn(true))
	if err != nil {
		return nil, fmt.Errorf("open mysql: %w", err)
	}
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20)
	db.SetConnMaxLifetime(5 * time.Minute)
	s := &Store{db: db, timeout: c.Timeout}
	if err := s.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// ensureDatabase creates the database when it is missing; an account without
// the right to do so gets the original's behaviour (the operator creates it).
func ensureDatabase(ctx context.Context, c MySQLConfig) error {
	db, err := sql.Open("mysql", c.dsn(false))
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

// Migrate creates the original's table if absent and adds this port's
// columns; it never drops anything and is safe to run from several replicas
// at once.
func (s *Store) Migrate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	const create = "CREATE TABLE IF NOT EXISTS `user` (" +
		"id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, " +
		"email VARCHAR(255) NOT NULL UNIQUE, " +
		"password VARCHAR(255) NOT NULL, " +
		"password_scheme VARCHAR(16) NOT NULL DEFAULT 'plain', " +
		"admin BOOLEAN NOT NULL DEFAULT FALSE)"
	if _, err := s.db.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("create table user: %w", translate(err))
	}
	columns := []struct{ name, ddl string }{
		// Rows written by the original hold plaintext: the default says so.
		{"password_scheme", "ALTER TABLE `user` ADD COLUMN password_scheme VARCHAR(16) NOT NULL DEFAULT 'plain'"},
		{"admin", "ALTER TABLE `user` ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE"},
	}
	for _, col := range columns {
		var n int
		err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.COLUMNS "+
			"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'user' AND COLUMN_NAME = ?", col.name).Scan(&n)
		if err != nil {
			return fmt.Errorf("inspect column %s: %w", col.name, translate(err))
		}
		if n > 0 {
			continue
		}
		if _, err := s.db.ExecContext(ctx, col.ddl); err != nil && !isMySQLError(err, 1060) { // 1060: duplicate column (another replica won)
			return fmt.Errorf("add column %s: %w", col.name, translate(err))
		}
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error { return s.db.Close() }

// Ping reports whether MySQL answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return translate(s.db.PingContext(ctx))
}

// UserByEmail returns the user with that email, ErrNotFound, or ErrUnavailable.
func (s *Store) UserByEmail(ctx context.Context, email string) (User, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var u User
	err := s.db.QueryRowContext(ctx,
		"SELECT id, email, password, password_scheme, admin FROM `user` WHERE email = ?", email).
		Scan(&u.ID, &u.Email, &u.Password, &u.Scheme, &u.Admin)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("select user: %w", translate(err))
	}
	return u, nil
}

// UpgradePassword replaces a legacy plaintext password with a hash, only if
// the row still holds that plaintext (a concurrent reset wins).
func (s *Store) UpgradePassword(ctx context.Context, id int64, oldPlain, hash string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.db.ExecContext(ctx,
		"UPDATE `user` SET password = ?, password_scheme = ? WHERE id = ? AND password_scheme = ? AND password = ?",
		hash, schemeBcrypt, id, schemePlain, oldPlain)
	if err != nil {
		return fmt.Errorf("upgrade password of user %d: %w", id, translate(err))
	}
	return nil
}

// PutUser creates the user or resets its password and admin flag.
func (s *Store) PutUser(ctx context.Context, email, hash string, admin bool) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.db.ExecContext(ctx,
		"INSERT INTO `user` (email, password, password_scheme, admin) VALUES (?, ?, ?, ?) "+
			"ON DUPLICATE KEY UPDATE password = VALUES(password), password_scheme = VALUES(password_scheme), admin = VALUES(admin)",
		email, hash, schemeBcrypt, admin)
	if err != nil {
		return fmt.Errorf("put user: %w", translate(err))
	}
	return nil
}

func isMySQLError(err error, number uint16) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == number
}

// translate maps connection-level failures (refused, timed out, lost) to
// ErrUnavailable; SQL errors pass through.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1040, 1045, 1049, 1203, 2002, 2003, 2006, 2013: // too many connections, access denied, unknown db, ...
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	// Everything else from the driver is about reaching the server:
	// net errors, context deadlines, bad connections.
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
