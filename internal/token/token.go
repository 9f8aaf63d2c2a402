// Package token issues and verifies the suite's JWTs: HS256, signed with
// JWT_SECRET, with the original's claims username, exp, iat and admin, so
// tokens verify both ways with the original's PyJWT code.
package token

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalid means the token is malformed, badly signed, expired or lacks a
// required claim.
var ErrInvalid = errors.New("invalid token")

// Claims are the JWT claims, in the original's names and types.
type Claims struct {
	Username string `json:"username"`
	Exp      int64  `json:"exp"`
	Iat      int64  `json:"iat"`
	Admin    bool   `json:"admin"`
}

// Issuer signs and verifies tokens with one secret.
type Issuer struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
	parser *jwt.Parser
}

// New returns an Issuer. The secret must not be empty.
func New(secret string, ttl time.Duration) (*Issuer, error) {
	if secret == "" {
		return nil, errors.New("token: empty secret")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("token: ttl %s must be positive", ttl)
	}
	i := &Issuer{secret: []byte(secret), ttl: ttl, now: time.Now}
	i.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(30*time.Second),
		jwt.WithTimeFunc(func() time.Time { return i.now() }),
	)
	return i, nil
}

// Issue returns a signed token for username.
func (i *Issuer) Issue(username string, admin bool) (string, error) {
	now := i.now().UTC()
	c := jwtClaims{
		Username: username,
		Admin:    admin,
		RegisteredClaims: jwt.RegisteredClaims{
			ExpiresAt: jwt.NewNumericDate(now.Add(i.ttl)),
			IssuedAt:  jwt.NewNumericDate(now),
		},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(i.secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// Verify checks the signature, algorithm (HS256 only), expiry and claims, and
// returns the claims.
func (i *Issuer) Verify(raw string) (Claims, error) {
	var c jwtClaims
	_, err := i.parser.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return i.secret, nil })
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.Username == "" {
		return Claims{}, fmt.Errorf("%w: no username claim", ErrInvalid)
	}
	out := Claims{Username: c.Username, Admin: c.Admin, Exp: c.ExpiresAt.Unix()}
	if c.IssuedAt != nil {
		out.Iat = c.IssuedAt.Unix()
	}
	return out, nil
}

// jwtClaims is the wire form: the same claim names and JSON types as the
// original's PyJWT payload (username string, exp and iat integers, admin bool).
type jwtClaims struct {
	Username string `json:"username"`
	Admin    bool   `json:"admin"`
	jwt.RegisteredClaims
}
