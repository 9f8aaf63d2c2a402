package auth

import (
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/httpx"
)

// Config is the auth service's configuration. The MYSQL_* names and
// JWT_SECRET are the original's.
type Config struct {
	Port     int    `env:"PORT" envDefault:"5000"`
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`

	DB DBConfig

	JWTSecret config.Secret `env:"JWT_SECRET,required,notEmpty"`
	JWTTTL    time.Duration `env:"JWT_TTL" envDefault:"24h"`

	// RequestTimeout bounds every request.
	RequestTimeout time.Duration `env:"REQUEST_TIMEOUT" envDefault:"10s"`
	// ShutdownTimeout must stay below the pod's terminationGracePeriodSeconds.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"15s"`

	// LoginRate and LoginBurst limit POST /login per client address
	// (requests per second, and the bucket size).
	LoginRate  float64 `env:"LOGIN_RATE" envDefault:"5"`
	LoginBurst int     `env:"LOGIN_BURST" envDefault:"20"`
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// for the rate limit (the gateway): CIDRs, "private" or "none".
	TrustedProxies httpx.Proxies `env:"TRUSTED_PROXIES" envDefault:"private"`
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
}

// MySQL returns the connection settings.
func (c DBConfig) MySQL() MySQLConfig {
	return MySQLConfig{Host: c.MySQLHost, Port: c.MySQLPort, User: c.MySQLUser,
		Password: c.MySQLPassword.Reveal(), DB: c.MySQLDB, Timeout: c.DBTimeout}
}
