// Package auth is the auth service: POST /login issues a JWT for an email and
// password kept in MySQL, POST /validate checks a JWT for the gateway.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"runtime"

	"golang.org/x/crypto/bcrypt"

	"mp3converter/internal/token"
)

// ErrInvalidCredentials means a wrong email or password; the client cannot
// tell which.
var ErrInvalidCredentials = errors.New("invalid credentials")

// ErrPasswordRules is returned for a password bcrypt cannot take.
var ErrPasswordRules = errors.New("password must be 1 to 72 bytes")

// userStore is what login needs from the database.
type userStore interface {
	UserByEmail(ctx context.Context, email string) (User, error)
	UpgradePassword(ctx context.Context, id int64, oldPlain, hash string) error
}

// Authenticator checks passwords and issues tokens.
type Authenticator struct {
	users  userStore
	tokens *token.Issuer
	cost   int
	dummy  []byte // a hash to compare against when the email is unknown
	log    *slog.Logger
	// slots holds one token per CPU: the logins doing their bcrypt work.
	slots chan struct{}
}

// NewAuthenticator returns an Authenticator hashing new passwords at cost.
func NewAuthenticator(users userStore, tokens *token.Issuer, cost int, log *slog.Logger) (*Authenticator, error) {
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("bcrypt cost %d out of range %d..%d", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("no such user, same work"), cost)
	if err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	return &Authenticator{users: users, tokens: tokens, cost: cost, dummy: dummy, log: log,
		slots: make(chan struct{}, runtime.GOMAXPROCS(0))}, nil
}

// HashPassword returns a bcrypt hash of password.
func HashPassword(password string, cost int) (string, error) {
	if len(password) == 0 || len(password) > 72 {
		return "", ErrPasswordRules
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// Login checks email and password and returns a signed token. Every path
// does one bcrypt comparison, so an unknown email costs what a wrong
// password costs. A legacy plaintext row is re-hashed on its first good login.
//
// At most one login per CPU does its bcrypt work at a time; the others wait
// their turn, in order, and give up without any work when ctx ends (the
// gateway timed out, the client left). Run all at once, a burst of logins
// shares the CPUs so that every one of them finishes late: past the
// gateway's timeout the whole burst fails, and the work done for callers who
// are gone is wasted.
func (a *Authenticator) Login(ctx context.Context, email, password string) (string, error) {
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-ctx.Done():
		return "", fmt.Errorf("%w: login abandoned while waiting for a CPU: %w", ErrUnavailable, ctx.Err())
	}
	if email == "" || len(email) > 255 {
		a.burn(password)
		return "", ErrInvalidCredentials
	}
	u, err := a.users.UserByEmail(ctx, email)
	switch {
	case errors.Is(err, ErrNotFound):
		a.burn(password)
		return "", ErrInvalidCredentials
	case err != nil:
		return "", err
	}
	switch u.Scheme {
	case schemeBcrypt:
		if bcrypt.CompareHashAndPassword([]byte(u.Password), []byte(password)) != nil {
			return "", ErrInvalidCredentials
		}
	case schemePlain:
		a.burn(password)
		// Compare fixed-length digests so neither content nor length leaks.
		want, got := sha256.Sum256([]byte(u.Password)), sha256.Sum256([]byte(password))
		if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
			return "", ErrInvalidCredentials
		}
		a.upgrade(ctx, u, password)
	default:
		a.burn(password)
		return "", fmt.Errorf("user %d: unknown password scheme %q", u.ID, u.Scheme)
	}
	return a.tokens.Issue(u.Email, u.Admin)
}

// burn spends one bcrypt comparison.
func (a *Authenticator) burn(password string) {
	_ = bcrypt.CompareHashAndPassword(a.dummy, []byte(password))
}

func (a *Authenticator) upgrade(ctx context.Context, u User, password string) {
	hash, err := HashPassword(password, a.cost)
	if err == nil {
		err = a.users.UpgradePassword(ctx, u.ID, password, hash)
	}
	if err != nil {
		// The login still succeeds; the next one tries again.
		a.log.Warn("legacy password not re-hashed", "user_id", u.ID, "err", err)
		return
	}
	a.log.Info("legacy plaintext password re-hashed", "user_id", u.ID)
}
