package auth

import (
	"cmp"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"mp3converter/internal/httpx"
	"mp3converter/internal/token"
)

// Server is the auth service's HTTP handler.
type Server struct {
	router  chi.Router
	auth    *Authenticator
	tokens  *token.Issuer
	limit   *limiter // per client address, every login
	account *limiter // per account, failed logins only
	proxies httpx.Proxies
	shared  httpx.Proxies
	metrics serverMetrics
}

type serverMetrics struct {
	logins *prometheus.CounterVec
}

// ServerOptions are the knobs of NewServer.
type ServerOptions struct {
	RequestTimeout time.Duration
	// LoginRate and LoginBurst limit logins per client address.
	LoginRate  float64
	LoginBurst int
	// AccountRate and AccountBurst limit failed logins per account
	// (whatever address they come from); zero: 0.1/s and 10.
	AccountRate  float64
	AccountBurst int
	// TrustedProxies name the client in X-Forwarded-For; zero: loopback
	// and private peers.
	TrustedProxies httpx.Proxies
	// SharedPeers front many clients without naming them (the original
	// gateway sends no X-Forwarded-For): logins from them are limited per
	// account only, not as one client. Zero: none.
	SharedPeers httpx.Proxies
}

// NewServer builds the routes: POST /login, POST /validate and the ops
// endpoints of ops.
func NewServer(a *Authenticator, tokens *token.Issuer, ops *httpx.Ops, log *slog.Logger, opt ServerOptions) *Server {
	s := &Server{
		router:  chi.NewRouter(),
		auth:    a,
		tokens:  tokens,
		limit:   newLimiter(opt.LoginRate, opt.LoginBurst),
		account: newLimiter(cmp.Or(opt.AccountRate, 0.1), cmp.Or(opt.AccountBurst, 10)),
		proxies: opt.TrustedProxies,
		shared:  opt.SharedPeers,
		metrics: serverMetrics{logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_logins_total", Help: "Login attempts by result (ok, invalid, error).",
		}, []string{"result"})},
	}
	ops.Registry.MustRegister(s.metrics.logins)
	s.router.Use(httpx.Middleware(log, httpx.NewMetrics(ops.Registry), opt.RequestTimeout))
	s.router.Use(limitBody)
	s.router.Post("/login", s.login)
	s.router.Post("/validate", s.validate)
	ops.Mount(s.router)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// limitBody caps request bodies: no auth endpoint reads one.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		next.ServeHTTP(w, r)
	})
}
