package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/httpx"
	"mp3converter/internal/logging"
)

// Config is the auth service's configuration. The MYSQL_* names and
// JWT_SECRET are the original's.
type Config struct {
	Port int `env:"PORT" envDefault:"5000"`
	logging.Config

	DB DBConfig

	JWTSecret config.Secret `env:"JWT_SECRET,required,notEmpty"`
	JWTTTL    time.Duration `env:"JWT_TTL" envDefault:"24h"`
	// LegacyAdminClaim writes "admin": true into every token, as the
	// original did, for as long as the original gateway (which refuses
	// tokens without it) runs beside this auth. It makes nobody an
	// administrator here (that is the role claim).
	LegacyAdminClaim bool `env:"LEGACY_ADMIN_CLAIM" envDefault:"false"`

	// RequestTimeout bounds every request.
	RequestTimeout time.Duration `env:"REQUEST_TIMEOUT" envDefault:"10s"`
	// ShutdownTimeout must stay below the pod's terminationGracePeriodSeconds.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"15s"`

	// LoginRate and LoginBurst limit POST /login per client address
	// (requests per second, and the bucket size).
	LoginRate  float64 `env:"LOGIN_RATE" envDefault:"5"`
	LoginBurst int     `env:"LOGIN_BURST" envDefault:"20"`
	// LoginAccountRate and LoginAccountBurst limit failed logins per
	// account, from whatever addresses they come.
	LoginAccountRate  float64 `env:"LOGIN_ACCOUNT_RATE" envDefault:"0.1"`
	LoginAccountBurst int     `env:"LOGIN_ACCOUNT_BURST" envDefault:"10"`
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// for the rate limit (the gateway): CIDRs, "private" or "none".
	TrustedProxies httpx.Proxies `env:"TRUSTED_PROXIES" envDefault:"private"`
	// SharedClientPeers (CIDRs or addresses; empty: none) front many
	// clients without naming them: the original gateway, which sends no
	// X-Forwarded-For. Their logins are limited per account only.
	SharedClientPeers string `env:"SHARED_CLIENT_PEERS"`
}

// SharedPeers parses SharedClientPeers (empty: none).
func (c Config) SharedPeers() (httpx.Proxies, error) {
	if strings.TrimSpace(c.SharedClientPeers) == "" {
		return httpx.ParseProxies("none")
	}
	p, err := httpx.ParseProxies(c.SharedClientPeers)
	if err != nil {
		return httpx.Proxies{}, fmt.Errorf("SHARED_CLIENT_PEERS: %w", err)
	}
	return p, nil
}

// DBConfig is what `auth user add` needs as well as the server.
type DBConfig struct {
	MySQLHost     string        `env:"MYSQL_HOST" envDefault:"mysql"`
	MySQLPort     int           `env:"MYSQL_PORT" envDefault:"3306"`
	MySQLUser     string        `env:"MYSQL_USER" envDefault:"auth_user"`
	MySQLPassword config.Secret `env:"MYSQL_PASSWORD"`
	MySQLDB       string        `env:"MYSQL_DB" envDefault:"auth"`
	// DBTimeout bounds every SQL statement.
	DBTimeout time.Duration `env:"DB_TIMEOUT" envDefault:"3s"`
	// BcryptCost is the work factor for new password hashes.
	BcryptCost int `env:"BCRYPT_COST" envDefault:"10"`
	// KeepPlaintextPasswords verifies the original's plaintext rows
	// without re-hashing them, while the original auth runs beside this
	// one or may be rolled back to; `auth user migrate-passwords` (or turning
	// it off) commits to bcrypt.
	KeepPlaintextPasswords bool `env:"KEEP_PLAINTEXT_PASSWORDS" envDefault:"false"`
}

// MySQL returns the connection settings.
func (c DBConfig) MySQL() MySQLConfig {
	return MySQLConfig{Host: c.MySQLHost, Port: c.MySQLPort, User: c.MySQLUser,
		Password: c.MySQLPassword.Reveal(), DB: c.MySQLDB, Timeout: c.DBTimeout}
}

// Validate reports every bad value, each error naming its variable.
func (c Config) Validate() error {
	_, peersErr := c.SharedPeers()
	errs := []error{config.CheckPort("PORT", c.Port), config.CheckPort("MYSQL_PORT", c.DB.MySQLPort), peersErr}
	bad := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	bad(strings.TrimSpace(c.DB.MySQLHost) != "", "MYSQL_HOST is empty")
	bad(strings.TrimSpace(c.DB.MySQLDB) != "", "MYSQL_DB is empty")
	bad(c.JWTTTL > 0, "JWT_TTL %s: want a positive duration", c.JWTTTL)
	bad(c.LoginRate > 0 && c.LoginAccountRate > 0, "LOGIN_RATE and LOGIN_ACCOUNT_RATE must be > 0")
	bad(c.LoginBurst >= 1 && c.LoginAccountBurst >= 1, "LOGIN_BURST and LOGIN_ACCOUNT_BURST must be ≥ 1")
	for name, d := range map[string]time.Duration{"REQUEST_TIMEOUT": c.RequestTimeout,
		"SHUTDOWN_TIMEOUT": c.ShutdownTimeout, "DB_TIMEOUT": c.DB.DBTimeout} {
		bad(d > 0, "%s %s: want a positive duration", name, d)
	}
	return errors.Join(errs...)
}
