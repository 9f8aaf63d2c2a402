package notification_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"mp3converter/internal/config"
	"mp3converter/internal/message"
	"mp3converter/internal/notification"
)

const (
	videoFID = "65f0a1b2c3d4e5f6a7b8c9d0"
	mp3FID   = "65f0a1b2c3d4e5f6a7b8c9d1"
)

func ptr(s string) *string { return &s }

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring; "" means valid
		check   func(t *testing.T, c notification.Config)
	}{
		{
			name: "original's Gmail variables",
			env:  map[string]string{"GMAIL_ADDRESS": "sender@gmail.com", "GMAIL_PASSWORD": "app-password"},
			check: func(t *testing.T, c notification.Config) {
				s := c.SMTP
				if s.Host != "smtp.gmail.com" || s.Port != 587 || s.TLS != "starttls" {
					t.Errorf("SMTP = %s:%d %s, want smtp.gmail.com:587 starttls", s.Host, s.Port, s.TLS)
				}
				if s.Username != "sender@gmail.com" || s.Password.Reveal() != "app-password" {
					t.Errorf("credentials = %q / %q, want the GMAIL_ values", s.Username, s.Password.Reveal())
				}
				if c.MailFrom != "sender@gmail.com" {
					t.Errorf("MailFrom = %q, want the Gmail address", c.MailFrom)
				}
				if c.Port != 8082 || c.MP3Queue != "mp3" {
					t.Errorf("Port, MP3Queue = %d, %q; want 8082, mp3", c.Port, c.MP3Queue)
				}
				// The gateway's and the converter's names and defaults.
				if c.MongoURI.Reveal() != "mongodb://mongodb:27017" || c.VideosDB != "videos" || c.MP3sDB != "mp3s" {
					t.Errorf("MongoDB = %q %q %q, want mongodb://mongodb:27017 videos mp3s", c.MongoURI.Reveal(), c.VideosDB, c.MP3sDB)
				}
				if got := fmt.Sprint(s.Password); strings.Contains(got, "app-password") {
					t.Errorf("password prints as %q", got)
				}
			},
		},
		{
			name: "SMTP_ names win over GMAIL_ names",
			env: map[string]string{"GMAIL_ADDRESS": "old@gmail.com", "GMAIL_PASSWORD": "old",
				"SMTP_USERNAME": "new@example.com", "SMTP_PASSWORD": "new", "MAIL_FROM": "MP3 <noreply@example.com>"},
			check: func(t *testing.T, c notification.Config) {
				if c.SMTP.Username != "new@example.com" || c.SMTP.Password.Reveal() != "new" {
					t.Errorf("credentials = %q / %q, want the SMTP_ values", c.SMTP.Username, c.SMTP.Password.Reveal())
				}
				if c.MailFrom != "MP3 <noreply@example.com>" {
					t.Errorf("MailFrom = %q", c.MailFrom)
				}
			},
		},
		{
			name: "implicit TLS defaults to 465, none to 25, PUBLIC_URL trimmed",
			env:  map[string]string{"SMTP_TLS": "TLS", "MAIL_FROM": "a@example.com", "PUBLIC_URL": "https://mp3.example.com/"},
			check: func(t *testing.T, c notification.Config) {
				if c.SMTP.Port != 465 || c.SMTP.TLS != "tls" {
					t.Errorf("SMTP port, TLS = %d, %q; want 465, tls", c.SMTP.Port, c.SMTP.TLS)
				}
				if c.PublicURL != "https://mp3.example.com" {
					t.Errorf("PublicURL = %q", c.PublicURL)
				}
			},
		},
		{
			name: "local relay",
			env:  map[string]string{"SMTP_TLS": "none", "SMTP_HOST": "127.0.0.1", "MAIL_FROM": "a@example.com"},
			check: func(t *testing.T, c notification.Config) {
				if c.SMTP.Port != 25 || c.SMTP.Username != "" {
					t.Errorf("port %d username %q, want 25 and none", c.SMTP.Port, c.SMTP.Username)
				}
			},
		},
		{name: "bad SMTP_TLS", env: map[string]string{"SMTP_TLS": "ssl", "MAIL_FROM": "a@example.com"}, wantErr: "SMTP_TLS"},
		{name: "no sender", env: map[string]string{}, wantErr: "MAIL_FROM"},
		{name: "bad MAIL_FROM", env: map[string]string{"MAIL_FROM": "not an address"}, wantErr: "MAIL_FROM"},
		{name: "username without password", env: map[string]string{"SMTP_USERNAME": "a@example.com"}, wantErr: "SMTP_PASSWORD"},
		{name: "bad PUBLIC_URL", env: map[string]string{"MAIL_FROM": "a@example.com", "PUBLIC_URL": "mp3.example.com"}, wantErr: "PUBLIC_URL"},
		{name: "bad SMTP_PORT", env: map[string]string{"MAIL_FROM": "a@example.com", "SMTP_PORT": "70000"}, wantErr: "SMTP_PORT"},
		{name: "bad CONCURRENCY", env: map[string]string{"MAIL_FROM": "a@example.com", "CONCURRENCY": "0"}, wantErr: "CONCURRENCY"},
		{
			name: "MongoDB settings",
			env: map[string]string{"MAIL_FROM": "a@example.com", "MONGODB_URI": "mongodb://u:secret@db:27017/?authSource=admin",
				"MONGODB_VIDEOS_DB": "v2", "MONGODB_MP3S_DB": "m2"},
			check: func(t *testing.T, c notification.Config) {
				if c.MongoURI.Reveal() != "mongodb://u:secret@db:27017/?authSource=admin" || c.VideosDB != "v2" || c.MP3sDB != "m2" {
					t.Errorf("MongoDB = %q %q %q", c.MongoURI.Reveal(), c.VideosDB, c.MP3sDB)
				}
				if got := fmt.Sprint(c.MongoURI); strings.Contains(got, "secret") {
					t.Errorf("MONGODB_URI prints as %q", got)
				}
			},
		},
		{name: "empty MONGODB_URI", env: map[string]string{"MAIL_FROM": "a@example.com", "MONGODB_URI": " "}, wantErr: "MONGODB_URI"},
		{name: "empty MONGODB_MP3S_DB", env: map[string]string{"MAIL_FROM": "a@example.com", "MONGODB_MP3S_DB": " "}, wantErr: "MONGODB_MP3S_DB"},
		{name: "missing SMTP_CA_FILE", env: map[string]string{"MAIL_FROM": "a@example.com", "SMTP_CA_FILE": "/nonexistent/ca.pem"}, wantErr: "SMTP_CA_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.LoadFrom[notification.Config](tt.env)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			err = c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c.Resolved())
			}
		})
	}
}

func TestCompose(t *testing.T) {
	c, err := notification.NewComposer("http://127.0.0.1:8080/", "MP3 Converter <noreply@mp3.example.com>")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("ready", func(t *testing.T) {
		e, err := c.Compose(message.Conversion{VideoFID: videoFID, MP3FID: ptr(mp3FID),
			Username: "user@example.com", Filename: `<b>me</b> & "you".mp4`})
		if err != nil {
			t.Fatal(err)
		}
		if e.To != "user@example.com" || e.Subject != "MP3 Download" {
			t.Errorf("To, Subject = %q, %q", e.To, e.Subject)
		}
		for _, want := range []string{
			"\nmp3 file_id: " + mp3FID + " is now ready!\n",
			"\nhttp://127.0.0.1:8080/?download=" + mp3FID + "\n",
			"GET http://127.0.0.1:8080/download?fid=" + mp3FID + "\n",
			"Authorization: Bearer <token>",
			`<b>me</b> & "you".mp4`, // plain text: as it is
		} {
			if !strings.Contains(e.Text, want) {
				t.Errorf("text body lacks %q:\n%s", want, e.Text)
			}
		}
		for _, want := range []string{
			`<a href="http://127.0.0.1:8080/?download=` + mp3FID + `">`,
			"&lt;b&gt;me&lt;/b&gt; &amp; &#34;you&#34;.mp4",
		} {
			if !strings.Contains(e.HTML, want) {
				t.Errorf("HTML body lacks %q:\n%s", want, e.HTML)
			}
		}
		if strings.Contains(e.HTML, "<b>me</b>") {
			t.Errorf("HTML body holds the filename unescaped:\n%s", e.HTML)
		}
		if e.MessageID != "mp3-"+mp3FID+"@mp3.example.com" {
			t.Errorf("MessageID = %q", e.MessageID)
		}
	})

	t.Run("ready without PUBLIC_URL", func(t *testing.T) {
		c, err := notification.NewComposer("", "noreply@mp3.example.com")
		if err != nil {
			t.Fatal(err)
		}
		e, err := c.Compose(message.Conversion{VideoFID: videoFID, MP3FID: ptr(mp3FID), Username: "user@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.Text, "mp3 file_id: "+mp3FID+" is now ready!") ||
			!strings.Contains(e.Text, "GET /download?fid="+mp3FID) || strings.Contains(e.Text, "http") {
			t.Errorf("text body:\n%s", e.Text)
		}
	})

	t.Run("failed", func(t *testing.T) {
		e, err := c.Compose(message.Conversion{VideoFID: videoFID, Username: "user@example.com",
			Filename: "clip.mov", Error: "no audio track\x1b[31m\r\nsecond line"})
		if err != nil {
			t.Fatal(err)
		}
		if e.Subject != "MP3 conversion failed" {
			t.Errorf("Subject = %q", e.Subject)
		}
		for _, want := range []string{"The conversion of clip.mov to MP3 failed:", "no audio track", "second line"} {
			if !strings.Contains(e.Text, want) {
				t.Errorf("text body lacks %q:\n%s", want, e.Text)
			}
		}
		if strings.ContainsAny(e.Text, "\x1b\r") || strings.Contains(e.Text, "is now ready") {
			t.Errorf("text body:\n%q", e.Text)
		}
	})
}

func TestComposeRejects(t *testing.T) {
	c, err := notification.NewComposer("http://127.0.0.1:8080", "noreply@mp3.example.com")
	if err != nil {
		t.Fatal(err)
	}
	ok := message.Conversion{VideoFID: videoFID, MP3FID: ptr(mp3FID), Username: "user@example.com"}
	tests := []struct {
		name string
		edit func(m *message.Conversion)
	}{
		{"CRLF header injection in username", func(m *message.Conversion) { m.Username = "user@example.com\r\nBcc: evil@example.com" }},
		{"LF in username", func(m *message.Conversion) { m.Username = "user@example.com\nX: y" }},
		{"NUL in username", func(m *message.Conversion) { m.Username = "user\x00@example.com" }},
		{"display name", func(m *message.Conversion) { m.Username = "Eve <eve@example.com>" }},
		{"two addresses", func(m *message.Conversion) { m.Username = "a@example.com, b@example.com" }},
		{"not an address", func(m *message.Conversion) { m.Username = "alice" }},
		{"invalid UTF-8", func(m *message.Conversion) { m.Username = "\xffuser@example.com" }},
		{"too long", func(m *message.Conversion) { m.Username = strings.Repeat("a", 250) + "@example.com" }},
		{"CRLF in filename", func(m *message.Conversion) { m.Filename = "a.mp4\r\nBcc: evil@example.com" }},
		{"neither mp3_fid nor error", func(m *message.Conversion) { m.MP3FID = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ok
			tt.edit(&m)
			if _, err := c.Compose(m); !errors.Is(err, notification.ErrInvalid) {
				t.Errorf("Compose = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := c.Compose(ok); err != nil {
		t.Errorf("Compose(valid) = %v", err)
	}
}
