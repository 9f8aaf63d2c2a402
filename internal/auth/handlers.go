package auth

import (
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

// login checks two buckets: the client address's (every attempt counts;
// skipped for SharedPeers, which front many clients), and the account's
// (only failures count, so that a guesser spread over many addresses is
// slowed down too, while the account's owner, knowing the password, is
// not locked out by someone else's guesses until the bucket is empty).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if client := s.proxies.ClientAddr(r); !s.shared.Contains(client) {
		if ok, wait := s.limit.allow(addrKey(client), now); !ok {
			responder.Error(w, r, tooMany(wait))
			return
		}
	}
	email, password, ok := r.BasicAuth()
	if !ok {
		responder.Error(w, r, httpx.Status(http.StatusUnauthorized, bodyMissing))
		return
	}
	account := strings.ToLower(email) // MySQL compares emails case-insensitively
	if ok, wait := s.account.peek(account, now); !ok {
		responder.Error(w, r, tooMany(wait))
		return
	}
	tok, err := s.auth.Login(r.Context(), email, password)
	if err != nil {
		if errors.Is(err, ErrInvalidCredentials) {
			s.metrics.logins.WithLabelValues("invalid").Inc()
			s.account.allow(account, now)
		} else {
			s.metrics.logins.WithLabelValues("error").Inc()
		}
		responder.Error(w, r, err)
		return
	}
	s.metrics.logins.WithLabelValues("ok").Inc()
	httpx.Text(w, http.StatusOK, tok)
}

// tooMany is the refusal of a login over its bucket's rate, with the
// seconds until the next try.
func tooMany(wait time.Duration) error {
	secs := int(math.Ceil(wait.Seconds()))
	return &httpx.StatusError{Status: http.StatusTooManyRequests, Body: "too many login attempts, retry later",
		Header: http.Header{"Retry-After": {strconv.Itoa(max(secs, 1))}}}
}

func (s *Server) validate(w http.ResponseWriter, r *http.Request) {
	raw, ok := token.FromHeader(r.Header.Get("Authorization"))
	if !ok {
		responder.Error(w, r, httpx.Status(http.StatusUnauthorized, bodyMissing))
		return
	}
	claims, err := s.tokens.Verify(raw)
	if err != nil {
		responder.Error(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.JSON(w, http.StatusOK, claims)
}
