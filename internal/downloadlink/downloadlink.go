// Package downloadlink signs and verifies the one-click download links
// that the notification emails carry:
//
//	GET /download?fid=<hex ObjectId>&expires=<unix seconds>&sig=<base64url>
//
// The signature is HMAC-SHA256, under a key kept in a Secret
// (DOWNLOAD_LINK_KEY, the same value for the notification, which signs, and
// the gateway, which verifies), over the MP3's id, its owner and the
// expiry. The URL does not name the owner: the gateway takes it from the
// stored MP3, so a link opens that one MP3, only while it belongs to the
// user the link was made for, until it expires. Replacing the key revokes
// every link signed with the old one.
package downloadlink

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// MinKeyLen is the shortest key accepted, in bytes: as long as the
// HMAC-SHA256 output, so the key is not the weak point.
const MinKeyLen = 32

// The query parameters of a link.
const (
	ParamFID     = "fid"
	ParamExpires = "expires"
	ParamSig     = "sig"
)

// Verify's errors. A link that is malformed, altered in any part, made for
// another owner or signed with another key is ErrInvalid; ErrExpired is
// only reported for a link whose signature holds.
var (
	ErrInvalid = errors.New("download link invalid")
	ErrExpired = errors.New("download link expired")
)

// domain separates these MACs from any other use of the same key.
const domain = "mp3converter download link v1"

// Signer signs and verifies links with one key.
type Signer struct {
	key []byte
}

// CheckKey reports a key that is set but shorter than MinKeyLen, as an
// error naming the variable that holds it. An empty key is no error (links
// are off).
func CheckKey(name, key string) error {
	if key != "" && len(key) < MinKeyLen {
		return fmt.Errorf("%s is %d bytes long: want at least %d (for example the output of `openssl rand -base64 48`)",
			name, len(key), MinKeyLen)
	}
	return nil
}

// NewSigner returns a Signer with key, which must be at least MinKeyLen
// bytes.
func NewSigner(key string) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("download link key is %d bytes long: want at least %d", len(key), MinKeyLen)
	}
	return &Signer{key: []byte(key)}, nil
}

// Link is a signed link's query: the MP3's id, when it expires (whole
// seconds) and the signature (base64url without padding).
type Link struct {
	FID     string
	Expires time.Time
	Sig     string
}

// Sign returns the link to fid (its lowercase hex, as the gateway
// canonicalises it) for owner, valid until expires (truncated to the
// second).
func (s *Signer) Sign(fid, owner string, expires time.Time) Link {
	exp := expires.Unix()
	return Link{FID: fid, Expires: time.Unix(exp, 0), Sig: base64.RawURLEncoding.EncodeToString(s.mac(fid, owner, exp))}
}

// Verify checks l against the owner of the MP3 it names at time now: nil
// when it was signed by this key for that fid, owner and expiry and has not
// expired; else ErrInvalid or ErrExpired. An empty owner never verifies.
func (s *Signer) Verify(l Link, owner string, now time.Time) error {
	sig, err := base64.RawURLEncoding.DecodeString(l.Sig)
	if err != nil || len(sig) != sha256.Size {
		return fmt.Errorf("%w: malformed signature", ErrInvalid)
	}
	if owner == "" {
		return fmt.Errorf("%w: the MP3 has no owner", ErrInvalid)
	}
	if !hmac.Equal(sig, s.mac(l.FID, owner, l.Expires.Unix())) {
		return fmt.Errorf("%w: the signature does not match", ErrInvalid)
	}
	if !now.Before(l.Expires) {
		return fmt.Errorf("%w on %s", ErrExpired, l.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// mac is HMAC-SHA256 over the domain and the three fields, each prefixed
// by its length, so that no two (fid, owner, expiry) share an input.
func (s *Signer) mac(fid, owner string, expires int64) []byte {
	msg := make([]byte, 0, len(domain)+len(fid)+len(owner)+32)
	msg = append(msg, domain...)
	for _, f := range []string{fid, owner, strconv.FormatInt(expires, 10)} {
		msg = binary.AppendUvarint(msg, uint64(len(f)))
		msg = append(msg, f...)
	}
	m := hmac.New(sha256.New, s.key)
	m.Write(msg)
	return m.Sum(nil)
}

// Query is the link's query string: fid=…&expires=…&sig=….
func (l Link) Query() string {
	return ParamFID + "=" + url.QueryEscape(l.FID) + "&" + ParamExpires + "=" + strconv.FormatInt(l.Expires.Unix(), 10) +
		"&" + ParamSig + "=" + url.QueryEscape(l.Sig)
}

// URL is the link on the gateway at base (its PUBLIC_URL, no trailing
// slash): base/download?fid=…&expires=…&sig=….
func (l Link) URL(base string) string { return base + "/download?" + l.Query() }

// Signed reports whether a query claims to be a signed link (it has an
// expires or a sig), as opposed to a download with a bearer token.
func Signed(q url.Values) bool { return q.Has(ParamExpires) || q.Has(ParamSig) }

// Parse reads a signed link from a query. Its errors wrap ErrInvalid: a
// missing, repeated or malformed parameter.
func Parse(q url.Values) (Link, error) {
	one := func(name string) (string, error) {
		switch v := q[name]; {
		case len(v) == 0 || v[0] == "":
			return "", fmt.Errorf("%w: no %s", ErrInvalid, name)
		case len(v) > 1:
			return "", fmt.Errorf("%w: %s given %d times", ErrInvalid, name, len(v))
		default:
			return v[0], nil
		}
	}
	fid, err := one(ParamFID)
	if err != nil {
		return Link{}, err
	}
	exp, err := one(ParamExpires)
	if err != nil {
		return Link{}, err
	}
	sig, err := one(ParamSig)
	if err != nil {
		return Link{}, err
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || n <= 0 {
		return Link{}, fmt.Errorf("%w: expires %q is not a positive Unix time", ErrInvalid, exp)
	}
	return Link{FID: fid, Expires: time.Unix(n, 0), Sig: sig}, nil
}
