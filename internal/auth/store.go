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

// ErrSchema means the database lacks what the server needs: the table, a
// column, or the right to read it. Its text names what is missing.
var ErrSchema = errors.New("user database not ready")

// Password schemes stored in user.password_scheme. The column only
// informs operators; Login tells a hash from plaintext by the value.
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

func (c MySQLConfig) dsn(withDB, multiStatements bool) string {
	mc := mysql.NewConfig()
	mc.MultiStatements = multiStatements
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

// OpenStore connects and checks that the schema holds what the server
// reads (see Migrate, which makes it so); it changes nothing, so an account
// with SELECT (and UPDATE, for re-hashing) on the user table is enough. It
// does not wait for MySQL: callers retry (see cmd/auth).
func OpenStore(ctx context.Context, c MySQLConfig) (*Store, error) {
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Second
	}
	db, err := sql.Open("mysql", c.dsn(true, false))
	if err != nil {
		return nil, fmt.Errorf("open mysql: %w", err)
	}
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20)
	db.SetConnMaxLifetime(5 * time.Minute)
	s := &Store{db: db, timeout: c.Timeout}
	if err := s.checkSchema(ctx, c); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// checkSchema reads no row but every column the server uses, and turns
// MySQL's refusal into a sentence naming what is missing.
func (s *Store) checkSchema(ctx context.Context, c MySQLConfig) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, "SELECT id, email, password, password_scheme, admin FROM `user` LIMIT 0")
	if err == nil {
		return rows.Close()
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1146: // no such table
			return fmt.Errorf("%w: database %q has no table `user`: run `auth migrate` (with an account that may CREATE and ALTER)", ErrSchema, c.DB)
		case 1054: // unknown column
			return fmt.Errorf("%w: table `user` of database %q lacks this version's columns (%s): run `auth migrate` (with an account that may ALTER)",
				ErrSchema, c.DB, me.Message)
		case 1142, 1143: // command or column denied
			return fmt.Errorf("%w: MySQL user %q may not read table `user` of %q (%s): GRANT SELECT, UPDATE ON %s.`user` TO it",
				ErrSchema, c.User, c.DB, me.Message, quoteIdent(c.DB))
		}
	}
	return fmt.Errorf("check schema: %w", translate(err))
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

// UpgradePassword replaces a stored password (plaintext, or a hash of
// another cost) with hash, only if the row still holds exactly old (a
// concurrent reset wins; the comparison is binary, not the column's
// case-insensitive collation).
func (s *Store) UpgradePassword(ctx context.Context, id int64, old, hash string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.db.ExecContext(ctx,
		"UPDATE `user` SET password = ?, password_scheme = ? WHERE id = ? AND password = CAST(? AS BINARY)",
		hash, schemeBcrypt, id, old)
	if err != nil {
		return fmt.Errorf("upgrade password of user %d: %w", id, translate(err))
	}
	return nil
}

// Users returns a page of users: those with id > after, at most limit, in
// id order.
func (s *Store) Users(ctx context.Context, after int64, limit int) ([]User, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx,
		"SELECT id, email, password, password_scheme, admin FROM `user` WHERE id > ? ORDER BY id LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", translate(err))
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Email, &u.Password, &u.Scheme, &u.Admin); err != nil {
			return nil, fmt.Errorf("list users: %w", translate(err))
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", translate(err))
	}
	return out, nil
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
