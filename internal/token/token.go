// Package token issues and verifies the suite's JWTs: HS256, signed with
// JWT_SECRET, with the original's claims username, exp, iat and admin, so
// tokens verify both ways with the original's PyJWT code.
//
// The original wrote "admin": true into every token; it meant only "may use
// the service", and the original gateway refuses tokens without it. So the
// admin claim grants nothing here: this suite's administrators carry
// "role": "admin", a claim the original never writes (and ignores).
package token

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalid means the token is malformed, badly signed, expired or lacks a
// required claim.
var ErrInvalid = errors.New("invalid token")

// Claims are the JWT claims, in the original's names and types, plus Role.
type Claims struct {
	Username string `json:"username"`
	Exp      int64  `json:"exp"`
	Iat      int64  `json:"iat"`
	// Admin is the original's claim: "may use the service" to the original
	// gateway. It grants nothing in this suite.
	Admin bool `json:"admin"`
	// Role is RoleAdmin for this suite's administrators, RoleUser or absent
	// (every token the original minted) for everyone else.
	Role string `json:"role,omitempty"`
}

// The values of the role claim.
const (
	RoleAdmin = "admin"
	RoleUser  = "user"
)

// IsAdmin reports whether the token names one of this suite's
// administrators (who may download any MP3). The original's admin claim
// does not count.
func (c Claims) IsAdmin() bool { return c.Role == RoleAdmin }

// Issuer signs and verifies tokens with one secret.
type Issuer struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
	parser *jwt.Parser
	// legacyAdmin writes "admin": true into every token, as the original
	// did, so that the original gateway accepts them (see LegacyAdminClaim).
	legacyAdmin bool
}

// Option changes an Issuer.
type Option func(*Issuer)

// LegacyAdminClaim makes the Issuer write "admin": true into every token it
// issues, as the original auth did, for as long as the original gateway
// (which refuses uploads and downloads without it) runs beside this suite.
// The role claim still tells this suite's administrators apart.
func LegacyAdminClaim(on bool) Option { return func(i *Issuer) { i.legacyAdmin = on } }

// New returns an Issuer. The secret must not be empty.
func New(secret string, ttl time.Duration, opts ...Option) (*Issuer, error) {
	if secret == "" {
		return nil, errors.New("token: empty secret")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("token: ttl %s must be positive", ttl)
	}
	i := &Issuer{secret: []byte(secret), ttl: ttl, now: time.Now}
	for _, o := range opts {
		o(i)
	}
	i.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(30*time.Second),
		jwt.WithTimeFunc(func() time.Time { return i.now() }),
	)
	return i, nil
}

// Issue returns a signed token for username; admin makes it one of this
// suite's administrators (role "admin").
func (i *Issuer) Issue(username string, admin bool) (string, error) {
	now := i.now().UTC()
	role := RoleUser
	if admin {
		role = RoleAdmin
	}
	c := jwtClaims{
		Username: username,
		Admin:    admin || i.legacyAdmin,
		Role:     role,
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
	out := Claims{Username: c.Username, Admin: c.Admin, Role: c.Role, Exp: c.ExpiresAt.Unix()}
	if c.IssuedAt != nil {
		out.Iat = c.IssuedAt.Unix()
	}
	return out, nil
}

// jwtClaims is the wire form: the same claim names and JSON types as the
// original's PyJWT payload (username string, exp and iat integers, admin
// bool), plus role.
type jwtClaims struct {
	Username string `json:"username"`
	Admin    bool   `json:"admin"`
	Role     string `json:"role,omitempty"`
	jwt.RegisteredClaims
}

// FromHeader returns the token of an "Authorization: Bearer <token>"
// header. No header, another scheme, or an empty token (nothing but spaces
// after the scheme) count as missing.
func FromHeader(header string) (string, bool) {
	scheme, tok, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
