package downloadlink_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"mp3converter/internal/downloadlink"
)

const (
	key   = "test-key-0123456789-0123456789-0123456789"
	fid   = "65f0a1b2c3d4e5f6a7b8c9d1"
	owner = "alice@example.com"
)

func signer(t *testing.T, k string) *downloadlink.Signer {
	t.Helper()
	s, err := downloadlink.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// roundTrip is what happens to a link: put in a URL, taken back by the
// gateway.
func roundTrip(t *testing.T, l downloadlink.Link) downloadlink.Link {
	t.Helper()
	u, err := url.Parse(l.URL("https://mp3.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Path != "/download" {
		t.Fatalf("path %q, want /download", u.Path)
	}
	got, err := downloadlink.Parse(u.Query())
	if err != nil {
		t.Fatalf("Parse(%s) = %v", u.RawQuery, err)
	}
	return got
}

func TestSignVerify(t *testing.T) {
	s := signer(t, key)
	now := time.Now()
	l := roundTrip(t, s.Sign(fid, owner, now.Add(72*time.Hour)))
	if l.FID != fid || l.Expires.Unix() != now.Add(72*time.Hour).Unix() {
		t.Fatalf("link = %+v", l)
	}
	if err := s.Verify(l, owner, now); err != nil {
		t.Fatalf("Verify = %v, want nil", err)
	}
	// A second before expiry it holds; at and after expiry it does not.
	if err := s.Verify(l, owner, l.Expires.Add(-time.Second)); err != nil {
		t.Errorf("Verify a second before expiry = %v", err)
	}
	for _, at := range []time.Time{l.Expires, l.Expires.Add(time.Hour)} {
		if err := s.Verify(l, owner, at); !errors.Is(err, downloadlink.ErrExpired) {
			t.Errorf("Verify at %s (expires %s) = %v, want ErrExpired", at, l.Expires, err)
		}
	}
	// The signature is URL-safe as it is: nothing to escape in it.
	if strings.ContainsAny(l.Sig, "+/=%") || url.QueryEscape(l.Sig) != l.Sig || len(l.Sig) != 43 {
		t.Errorf("signature %q is not 43 characters of base64url", l.Sig)
	}
}

func TestTampered(t *testing.T) {
	s := signer(t, key)
	now := time.Now()
	good := s.Sign(fid, owner, now.Add(time.Hour))
	flip := func(sig string) string { // the last character changed
		b := []byte(sig)
		if b[len(b)-1] == 'A' {
			b[len(b)-1] = 'Q'
		} else {
			b[len(b)-1] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name  string
		link  downloadlink.Link
		owner string
	}{
		{"other fid", downloadlink.Link{FID: "65f0a1b2c3d4e5f6a7b8c9d2", Expires: good.Expires, Sig: good.Sig}, owner},
		{"later expiry", downloadlink.Link{FID: fid, Expires: good.Expires.Add(time.Hour), Sig: good.Sig}, owner},
		{"earlier expiry", downloadlink.Link{FID: fid, Expires: good.Expires.Add(-time.Second), Sig: good.Sig}, owner},
		{"other owner", good, "bob@example.com"},
		{"owner differing in case", good, "Alice@example.com"},
		{"no owner", good, ""},
		{"signature altered", downloadlink.Link{FID: fid, Expires: good.Expires, Sig: flip(good.Sig)}, owner},
		{"signature cut", downloadlink.Link{FID: fid, Expires: good.Expires, Sig: good.Sig[:len(good.Sig)-2]}, owner},
		{"signature padded", downloadlink.Link{FID: fid, Expires: good.Expires, Sig: good.Sig + "="}, owner},
		{"signature not base64url", downloadlink.Link{FID: fid, Expires: good.Expires, Sig: strings.Repeat("!", 43)}, owner},
		{"no signature", downloadlink.Link{FID: fid, Expires: good.Expires}, owner},
		// Fields that run into each other must not sign alike.
		{"fid and owner shifted", downloadlink.Link{FID: fid + "a", Expires: good.Expires, Sig: good.Sig}, strings.TrimPrefix(owner, "a")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Verify(tt.link, tt.owner, now); !errors.Is(err, downloadlink.ErrInvalid) {
				t.Errorf("Verify = %v, want ErrInvalid", err)
			}
		})
	}
	if err := s.Verify(good, owner, now); err != nil {
		t.Errorf("Verify(untouched) = %v", err)
	}
}

// An expired link whose signature does not hold is invalid, not expired.
func TestExpiredAndAltered(t *testing.T) {
	s := signer(t, key)
	l := s.Sign(fid, owner, time.Now().Add(-time.Hour))
	l.FID = "65f0a1b2c3d4e5f6a7b8c9d2"
	if err := s.Verify(l, owner, time.Now()); !errors.Is(err, downloadlink.ErrInvalid) {
		t.Errorf("Verify = %v, want ErrInvalid", err)
	}
}

// Replacing the key revokes every link the old one signed.
func TestWrongKey(t *testing.T) {
	now := time.Now()
	l := signer(t, key).Sign(fid, owner, now.Add(time.Hour))
	other := signer(t, strings.ToUpper(key))
	if err := other.Verify(l, owner, now); !errors.Is(err, downloadlink.ErrInvalid) {
		t.Errorf("Verify with another key = %v, want ErrInvalid", err)
	}
	if l2 := other.Sign(fid, owner, l.Expires); l2.Sig == l.Sig {
		t.Errorf("two keys made the same signature %q", l.Sig)
	}
}

func TestKeyLength(t *testing.T) {
	short := strings.Repeat("k", downloadlink.MinKeyLen-1)
	if _, err := downloadlink.NewSigner(short); err == nil {
		t.Error("NewSigner accepted a 31-byte key")
	}
	if _, err := downloadlink.NewSigner(strings.Repeat("k", downloadlink.MinKeyLen)); err != nil {
		t.Errorf("NewSigner(32 bytes) = %v", err)
	}
	if err := downloadlink.CheckKey("DOWNLOAD_LINK_KEY", short); err == nil || !strings.Contains(err.Error(), "DOWNLOAD_LINK_KEY") {
		t.Errorf("CheckKey(31 bytes) = %v, want an error naming DOWNLOAD_LINK_KEY", err)
	}
	if err := downloadlink.CheckKey("DOWNLOAD_LINK_KEY", ""); err != nil {
		t.Errorf("CheckKey(empty) = %v, want nil (links off)", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, query string
		ok          bool
	}{
		{"complete", "fid=" + fid + "&expires=1900000000&sig=abc", true},
		{"no fid", "expires=1900000000&sig=abc", false},
		{"no expires", "fid=" + fid + "&sig=abc", false},
		{"no sig", "fid=" + fid + "&expires=1900000000", false},
		{"empty sig", "fid=" + fid + "&expires=1900000000&sig=", false},
		{"two sigs", "fid=" + fid + "&expires=1900000000&sig=abc&sig=def", false},
		{"two fids", "fid=" + fid + "&fid=" + fid + "&expires=1900000000&sig=abc", false},
		{"expires not a number", "fid=" + fid + "&expires=soon&sig=abc", false},
		{"expires negative", "fid=" + fid + "&expires=-5&sig=abc", false},
		{"expires zero", "fid=" + fid + "&expires=0&sig=abc", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			if !downloadlink.Signed(q) { // each has an expires or a sig
				t.Errorf("Signed(%s) = false", tt.query)
			}
			_, err := downloadlink.Parse(q)
			if tt.ok && err != nil {
				t.Errorf("Parse = %v", err)
			}
			if !tt.ok && !errors.Is(err, downloadlink.ErrInvalid) {
				t.Errorf("Parse = %v, want ErrInvalid", err)
			}
		})
	}
	q, _ := url.ParseQuery("fid=" + fid)
	if downloadlink.Signed(q) {
		t.Error("Signed(fid only) = true: a bearer download would be taken for a link")
	}
}
