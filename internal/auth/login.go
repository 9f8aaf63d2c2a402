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
	UpgradePassword(ctx context.Context, id int64, old, hash string) error
}

// Authenticator checks passwords and issues tokens.
type Authenticator struct {
	users  userStore
	tokens *token.Issuer
	opt    PasswordOptions
	dummy  []byte // a hash to compare against when the email is unknown
	// padding holds a hash of each cost below Cost, for pad.
	padding map[int][]byte
	log     *slog.Logger
	// slots holds one token per CPU: the logins doing their bcrypt work.
	slots chan struct{}
}

// PasswordOptions say how passwords are kept.
type PasswordOptions struct {
	// Cost is the bcrypt work factor of new hashes.
	Cost int
	// KeepPlaintext verifies plaintext rows (the original's) without
	// re-hashing them, so that the original auth, running beside this one
	// or rolled back to, still logs those users in. Off, a plaintext
	// password is replaced by a hash on its first good login.
	KeepPlaintext bool
}

// NewAuthenticator returns an Authenticator.
func NewAuthenticator(users userStore, tokens *token.Issuer, opt PasswordOptions, log *slog.Logger) (*Authenticator, error) {
	if opt.Cost < bcrypt.MinCost || opt.Cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("bcrypt cost %d out of range %d..%d", opt.Cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("no such user, same work"), opt.Cost)
	if err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	padding := map[int][]byte{}
	for c := bcrypt.MinCost; c < opt.Cost; c++ { // together less work than one hash at Cost
		if padding[c], err = bcrypt.GenerateFromPassword([]byte("padding"), c); err != nil {
			return nil, fmt.Errorf("padding hash: %w", err)
		}
	}
	return &Authenticator{users: users, tokens: tokens, opt: opt, dummy: dummy, padding: padding, log: log,
		slots: make(chan struct{}, runtime.GOMAXPROCS(0))}, nil
}

// IsHash reports whether a password column's value is a bcrypt hash; any
// other value is a plaintext password (the original's rows, or a password
// an operator reset by hand the original's way).
func IsHash(stored string) bool {
	_, err := bcrypt.Cost([]byte(stored))
	return err == nil
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
// password costs. A plaintext row is re-hashed on its first good login
// (unless KeepPlaintext).
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
	if cost, err := bcrypt.Cost([]byte(u.Password)); err == nil {
		ok := bcrypt.CompareHashAndPassword([]byte(u.Password), []byte(password)) == nil
		a.pad(cost, password)
		if !ok {
			return "", ErrInvalidCredentials
		}
		if cost != a.opt.Cost {
			a.upgrade(ctx, u, password)
		}
		return a.tokens.Issue(u.Email, u.Admin)
	}
	a.burn(password)
	if u.Scheme == schemeBcrypt {
		a.log.Warn("stored password is not a hash although the row says bcrypt: it was reset by hand, "+
			"and is checked as plaintext", "user_id", u.ID)
	}
	// Compare fixed-length digests so neither content nor length leaks.
	want, got := sha256.Sum256([]byte(u.Password)), sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		a.log.Warn("login refused: wrong password for a row holding plaintext (the original's, or reset by hand)", "user_id", u.ID)
		return "", ErrInvalidCredentials
	}
	if !a.opt.KeepPlaintext {
		a.upgrade(ctx, u, password)
	}
	return a.tokens.Issue(u.Email, u.Admin)
}

// burn spends one bcrypt comparison at Cost.
func (a *Authenticator) burn(password string) {
	_ = bcrypt.CompareHashAndPassword(a.dummy, []byte(password))
}

// pad brings a comparison against a hash of a lower cost up to the time of
// one at Cost (what an unknown email costs), so that a user whose hash is
// older does not answer faster: the work doubles with each cost step, and
// one comparison at each cost from cost to Cost-1 adds up to the
// difference. (A hash of a higher cost still takes longer; it is re-hashed
// at Cost on its next good login.)
func (a *Authenticator) pad(cost int, password string) {
	for c := cost; c < a.opt.Cost; c++ {
		_ = bcrypt.CompareHashAndPassword(a.padding[c], []byte(password))
	}
}

// upgrade replaces u's stored password (plaintext, or a hash of another
// cost) with a hash at Cost, unless the row changed meanwhile.
func (a *Authenticator) upgrade(ctx context.Context, u User, password string) {
	hash, err := HashPassword(password, a.opt.Cost)
	if err == nil {
		err = a.users.UpgradePassword(ctx, u.ID, u.Password, hash)
	}
	if err != nil {
		// The login still succeeds; the next one tries again.
		a.log.Warn("password not re-hashed", "user_id", u.ID, "err", err)
		return
	}
	a.log.Info("password re-hashed", "user_id", u.ID, "cost", a.opt.Cost)
}
