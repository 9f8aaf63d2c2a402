package auth

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"mp3converter/internal/httpx"
	"mp3converter/internal/token"
)

// The original's bodies, kept exactly.
const (
	bodyMissing       = "missing credentials"
	bodyInvalid       = "invalid credentials"
	bodyNotAuthorized = "not authorized"
)

// responder maps the service's errors to what clients see, in one table.
var responder = httpx.Responder{Rules: []httpx.ErrorRule{
	{Err: ErrInvalidCredentials, Status: http.StatusUnauthorized, Body: bodyInvalid},
	{Err: token.ErrInvalid, Status: http.StatusForbidden, Body: bodyNotAuthorized},
	{Err: ErrUnavailable, Status: http.StatusServiceUnavailable, Body: "service unavailable"},
}}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if ok, wait := s.limit.allow(s.proxies.ClientAddr(r), time.Now()); !ok {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		httpx.Text(w, http.StatusTooManyRequests, "too many login attempts, retry later")
		return
	}
	email, password, ok := r.BasicAuth()
	if !ok {
		httpx.Text(w, http.StatusUnauthorized, bodyMissing)
		return
	}
	tok, err := s.auth.Login(r.Context(), email, password)
	if err != nil {
		if errors.Is(err, ErrInvalidCredentials) {
			s.metrics.logins.WithLabelValues("invalid").Inc()
		} else {
			s.metrics.logins.WithLabelValues("error").Inc()
		}
		responder.Error(w, r, err)
		return
	}
	s.metrics.logins.WithLabelValues("ok").Inc()
	httpx.Text(w, http.StatusOK, tok)
}

func (s *Server) validate(w http.ResponseWriter, r *http.Request) {
	raw, ok := bearer(r)
	if !ok {
		httpx.Text(w, http.StatusUnauthorized, bodyMissing)
		return
	}
	claims, err := s.tokens.Verify(raw)
	if err != nil {
		responder.Error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(claims)
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
// No header, another scheme, or an empty token count as missing credentials.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
