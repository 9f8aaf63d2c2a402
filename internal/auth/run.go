package auth

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"mp3converter/internal/app"
	"mp3converter/internal/httpx"
	"mp3converter/internal/token"
)

// Run is the auth server: it waits for MySQL (a minute at most), checks the
// schema, and serves POST /login, POST /validate and the ops endpoints on
// PORT until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
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
	authn, err := NewAuthenticator(store, tokens,
		PasswordOptions{Cost: cfg.DB.BcryptCost, KeepPlaintext: cfg.DB.KeepPlaintextPasswords}, log)
	if err != nil {
		return err
	}
	ops := httpx.NewOps(httpx.NewRegistry())
	ops.AddCheck("mysql", store.Ping)
	h := NewServer(authn, tokens, ops, log, ServerOptions{
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
	// The ops endpoints are on PORT too (auth is not exposed publicly).
	return app.Serve(ctx, log, srv, nil)
}
