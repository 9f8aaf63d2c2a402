package gateway

import (
	"context"
	"net/http"

	"mp3converter/internal/httpx"
	"mp3converter/internal/logging"
	"mp3converter/internal/token"
)

type claimsKey struct{}

func claimsFrom(ctx context.Context) token.Claims {
	c, _ := ctx.Value(claimsKey{}).(token.Claims)
	return c
}

// requireUser validates the bearer token with auth on every request, as the
// original does; auth's 401/403 pass through unchanged. A request without
// a token is refused with 401 "missing credentials" before auth is asked
// (authclient.Client.Validate).
func (s *Server) requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := s.Auth.Validate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			responder.Error(w, r, err)
			return
		}
		ctx := context.WithValue(r.Context(), claimsKey{}, claims)
		ctx = logging.Into(ctx, logging.From(ctx).With("username", claims.Username))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	resp, err := s.Auth.Login(r.Context(), r.Header.Get("Authorization"), s.opt.TrustedProxies.ClientAddr(r))
	if err != nil {
		responder.Error(w, r, err)
		return
	}
	if resp.RetryAfter != "" {
		w.Header().Set("Retry-After", resp.RetryAfter)
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.Text(w, resp.Status, string(resp.Body))
}
