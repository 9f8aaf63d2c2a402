package notification_test

import (
	"errors"
	"fmt"
	"html"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/downloadlink"
	"mp3converter/internal/message"
	"mp3converter/internal/notification"
	"mp3converter/internal/testenv"
)

const testLinkKey = "notification-test-download-link-key-0123456789"

// oneClickLine finds the signed download link in an email's text.
var oneClickLine = regexp.MustCompile(`(?m)^(\S+/download\?fid=[0-9a-f]{24}&expires=[0-9]+&sig=[A-Za-z0-9_-]+)\r?$`)

// signedLink returns the one signed link in text, parsed.
func signedLink(t *testing.T, text string) (string, downloadlink.Link) {
	t.Helper()
	all := oneClickLine.FindAllStringSubmatch(text, -1)
	if len(all) != 1 {
		t.Fatalf("want one signed download link in the text, found %d:\n%s", len(all), text)
	}
	u, err := url.Parse(all[0][1])
	if err != nil {
		t.Fatal(err)
	}
	l, err := downloadlink.Parse(u.Query())
	if err != nil {
		t.Fatalf("link %s: %v", u, err)
	}
	return u.String(), l
}

// checkLink checks that l verifies for owner now, not for anyone else, and
// expires ttl after it was made (between before and after).
func checkLink(t *testing.T, s *downloadlink.Signer, l downloadlink.Link, owner string, ttl time.Duration, before, after time.Time) {
	t.Helper()
	if l.FID != mp3FID {
		t.Errorf("link fid %s, want %s", l.FID, mp3FID)
	}
	if err := s.Verify(l, owner, time.Now()); err != nil {
		t.Errorf("link does not verify for %s: %v", owner, err)
	}
	if err := s.Verify(l, "someone@example.com", time.Now()); !errors.Is(err, downloadlink.ErrInvalid) {
		t.Errorf("link verifies for someone else: %v", err)
	}
	lo, hi := before.Add(ttl).Truncate(time.Second), after.Add(ttl)
	if l.Expires.Before(lo) || l.Expires.After(hi) {
		t.Errorf("link expires %s, want %s after it was made (%s … %s)", l.Expires, ttl, lo, hi)
	}
	if err := s.Verify(l, owner, l.Expires); !errors.Is(err, downloadlink.ErrExpired) {
		t.Errorf("at its expiry, Verify = %v, want ErrExpired", err)
	}
}

func TestConfigDownloadLink(t *testing.T) {
	key := strings.Repeat("k", 32)
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string // "": valid
		key     string
		ttl     time.Duration
	}{
		{name: "defaults", env: map[string]string{}, ttl: 72 * time.Hour},
		{name: "set", env: map[string]string{"DOWNLOAD_LINK_KEY": key, "DOWNLOAD_LINK_TTL": "24h"}, key: key, ttl: 24 * time.Hour},
		{name: "short key", env: map[string]string{"DOWNLOAD_LINK_KEY": key[:31]}, wantErr: "DOWNLOAD_LINK_KEY"},
		{name: "zero TTL", env: map[string]string{"DOWNLOAD_LINK_TTL": "0s"}, wantErr: "DOWNLOAD_LINK_TTL"},
		{name: "negative TTL", env: map[string]string{"DOWNLOAD_LINK_TTL": "-1h"}, wantErr: "DOWNLOAD_LINK_TTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["MAIL_FROM"] = "a@example.com"
			c, err := config.LoadFrom[notification.Config](tc.env)
			if err != nil {
				t.Fatal(err)
			}
			before := fmt.Sprintf("%+v", c)
			err = c.Validate()
			if fmt.Sprintf("%+v", c) != before {
				t.Error("Validate changed the configuration")
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate = %v, want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate = %v", err)
			}
			if c.DownloadLinkKey.Reveal() != tc.key || c.DownloadLinkTTL != tc.ttl {
				t.Errorf("key %q, TTL %s; want %q, %s", c.DownloadLinkKey.Reveal(), c.DownloadLinkTTL, tc.key, tc.ttl)
			}
			if tc.key != "" && strings.Contains(before, tc.key) {
				t.Errorf("the key prints: %s", before)
			}
		})
	}
}

func TestComposeSignedLink(t *testing.T) {
	signer, _ := downloadlink.NewSigner(testLinkKey)
	c, err := notification.NewComposer("https://mp3.example.com/", mailFrom)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SignLinks(signer, 5*time.Hour); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	e, err := c.Compose(message.Conversion{VideoFID: videoFID, MP3FID: ptr(mp3FID), Username: "user@example.com", Filename: "a.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	link, l := signedLink(t, e.Text)
	checkLink(t, signer, l, "user@example.com", 5*time.Hour, before, time.Now())
	if !strings.HasPrefix(link, "https://mp3.example.com/download?") {
		t.Errorf("link %s is not on PUBLIC_URL", link)
	}
	// The original's line and the other ways to download stay.
	for _, want := range []string{
		"\nmp3 file_id: " + mp3FID + " is now ready!\n",
		"no login needed (the link works until " + l.Expires.UTC().Format("Mon, 2 Jan 2006 15:04 MST"),
		"\nhttps://mp3.example.com/?download=" + mp3FID + "\n",
		"GET https://mp3.example.com/download?fid=" + mp3FID + "\n",
	} {
		if !strings.Contains(e.Text, want) {
			t.Errorf("text body lacks %q:\n%s", want, e.Text)
		}
	}
	if !strings.Contains(e.HTML, `<a href="`+html.EscapeString(link)+`">Download the MP3</a>`) ||
		!strings.Contains(e.HTML, `<a href="https://mp3.example.com/?download=`+mp3FID+`">`) {
		t.Errorf("HTML body lacks the signed link %s and the page link:\n%s", link, e.HTML)
	}

	// A failure email has no link; nor has a success email without
	// PUBLIC_URL.
	e, err = c.Compose(message.Conversion{VideoFID: videoFID, Username: "user@example.com", Error: "no audio"})
	if err != nil || strings.Contains(e.Text, "sig=") || strings.Contains(e.HTML, "sig=") {
		t.Errorf("failure email: %v\n%s", err, e.Text)
	}
	noURL, _ := notification.NewComposer("", mailFrom)
	if err := noURL.SignLinks(signer, time.Hour); err != nil {
		t.Fatal(err)
	}
	e, err = noURL.Compose(message.Conversion{VideoFID: videoFID, MP3FID: ptr(mp3FID), Username: "user@example.com"})
	if err != nil || strings.Contains(e.Text, "sig=") || !strings.Contains(e.Text, "GET /download?fid="+mp3FID) {
		t.Errorf("without PUBLIC_URL: %v\n%s", err, e.Text)
	}
	if err := c.SignLinks(signer, 0); err == nil {
		t.Error("SignLinks accepted a zero lifetime")
	}
}

// The email that arrives (in Mailpit) carries a link that the gateway's
// key verifies for the recipient, for DOWNLOAD_LINK_TTL.
func TestSuccessEmailSignedLink(t *testing.T) {
	t.Parallel()
	mp := testenv.MailpitShared(t)
	signer, _ := downloadlink.NewSigner(testLinkKey)
	const ttl = 90 * time.Minute
	s := startStack(t, plainSMTP(mp), stackOptions{links: signer, linkTTL: ttl})
	to := testenv.MailAddress("notify_link")
	before := time.Now()
	s.publishMsg(success(to, "clip.mp4"))
	got := mp.WaitFor(t, to, mailWait)
	after := time.Now()

	link, l := signedLink(t, got.Text)
	checkLink(t, signer, l, to, ttl, before, after)
	if !strings.HasPrefix(link, publicURL+"/download?fid="+mp3FID+"&") {
		t.Errorf("link %s", link)
	}
	if !strings.Contains(got.Text, "mp3 file_id: "+mp3FID+" is now ready!") || !strings.Contains(got.Text, publicURL+"/?download="+mp3FID) {
		t.Errorf("text body lacks the original's line or the page link:\n%s", got.Text)
	}
	if !strings.Contains(got.HTML, html.EscapeString(link)) {
		t.Errorf("HTML part lacks the link %s:\n%s", link, got.HTML)
	}
	// Another key (a rotated one) does not accept it.
	other, _ := downloadlink.NewSigner(strings.ToUpper(testLinkKey))
	if err := other.Verify(l, to, time.Now()); !errors.Is(err, downloadlink.ErrInvalid) {
		t.Errorf("another key: %v, want ErrInvalid", err)
	}
	s.waitCount(notification.ResultSent, 1)
	s.drained()
}
