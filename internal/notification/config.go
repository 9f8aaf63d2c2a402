package notification

import (
	"cmp"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"strings"
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/downloadlink"
	"mp3converter/internal/logging"
	"mp3converter/internal/mongodb"
	"mp3converter/internal/mq"
)

// Config is the notification service's configuration. MP3_QUEUE,
// GMAIL_ADDRESS and GMAIL_PASSWORD are the original's names; the SMTP_*
// names generalise them (SMTP_USERNAME and SMTP_PASSWORD win when both are
// set).
type Config struct {
	Port int `env:"PORT" envDefault:"8082"`
	logging.Config

	mq.BrokerConfig
	MP3Queue string `env:"MP3_QUEUE" envDefault:"mp3"`

	// MongoDB, where each MP3 message's outcome is recorded before the
	// email goes out (see Recorder): the job marked done, the MP3 given its
	// owner. The same names and defaults as the gateway's and the
	// converter's.
	mongodb.StoreConfig

	SMTP SMTPConfig

	// MailFrom is the sender (From header and envelope), an address with an
	// optional display name; empty means the SMTP username.
	MailFrom string `env:"MAIL_FROM"`
	// PublicURL is the gateway's base URL for the links in the emails
	// (http://127.0.0.1:8080); empty leaves the links out.
	PublicURL string `env:"PUBLIC_URL"`
	// DownloadLinkKey signs the one-click download link in each success
	// email (with PUBLIC_URL), verified by the gateway's DOWNLOAD_LINK_KEY
	// (the same value); empty: the email has the page link only.
	// DownloadLinkTTL is how long such a link works.
	DownloadLinkKey config.Secret `env:"DOWNLOAD_LINK_KEY"`
	DownloadLinkTTL time.Duration `env:"DOWNLOAD_LINK_TTL" envDefault:"72h"`

	// Concurrency is how many emails are sent at once; Prefetch how many
	// messages the broker hands this replica ahead.
	Concurrency int `env:"CONCURRENCY" envDefault:"4"`
	Prefetch    int `env:"PREFETCH" envDefault:"8"`
	// MaxAttempts bounds the tries of a message whose sending fails
	// transiently (SMTP server down, 4xx) before it is dead-lettered to
	// <MP3_QUEUE>.dead; RetryBackoff is the first delay between tries (it
	// doubles, up to 30s).
	MaxAttempts  int           `env:"MAX_ATTEMPTS" envDefault:"5"`
	RetryBackoff time.Duration `env:"RETRY_BACKOFF" envDefault:"2s"`
	// MaxRedeliveries bounds how often a message may come back unsettled
	// (a replica died while sending it) before it is dead-lettered.
	MaxRedeliveries int `env:"MAX_REDELIVERIES" envDefault:"10"`
	// ShutdownTimeout is how long an email being sent may take after
	// SIGTERM (below the pod's terminationGracePeriodSeconds).
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
}

// SMTPConfig is how to reach the SMTP server.
type SMTPConfig struct {
	Host string `env:"SMTP_HOST" envDefault:"smtp.gmail.com"`
	// Port 0 means the mode's standard port: 587 (starttls), 465 (tls),
	// 25 (none).
	Port     int           `env:"SMTP_PORT"`
	Username string        `env:"SMTP_USERNAME"`
	Password config.Secret `env:"SMTP_PASSWORD"`
	// GmailAddress and GmailPassword are the original's names for the
	// sender and its password, used when SMTP_USERNAME / SMTP_PASSWORD are
	// not set.
	GmailAddress  string        `env:"GMAIL_ADDRESS"`
	GmailPassword config.Secret `env:"GMAIL_PASSWORD"`
	// TLS is starttls (mandatory STARTTLS, Gmail on 587), tls (implicit
	// TLS, 465) or none (plain, for a local relay or Mailpit).
	TLS string `env:"SMTP_TLS" envDefault:"starttls"`
	// CAFile is a PEM bundle of CAs to trust instead of the system's (a
	// private relay's CA); empty means the system roots.
	CAFile string `env:"SMTP_CA_FILE"`
	// Timeout bounds each step: connecting with the TLS handshake and
	// authentication, then sending the message.
	Timeout time.Duration `env:"SMTP_TIMEOUT" envDefault:"30s"`
}

// The SMTP_TLS modes.
const (
	TLSStartTLS = "starttls"
	TLSImplicit = "tls"
	TLSNone     = "none"
)

// Resolved is c with its fallbacks applied, as the service uses it: the SMTP ones (see
// SMTPConfig.resolved), MAIL_FROM from the SMTP username, PUBLIC_URL
// without its trailing slash.
func (c Config) Resolved() Config {
	c.SMTP = c.SMTP.resolved()
	c.MailFrom = cmp.Or(c.MailFrom, c.SMTP.Username)
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	return c
}

// Validate checks the configuration as resolved; each error names the
// variable at fault.
func (c Config) Validate() error {
	c = c.Resolved()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := config.CheckPort("PORT", c.Port); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(c.MP3Queue) == "" {
		bad("MP3_QUEUE is empty")
	}
	if err := c.StoreConfig.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.SMTP.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MailFrom == "" {
		bad("MAIL_FROM is required when there is no SMTP_USERNAME (or GMAIL_ADDRESS) to send as")
	} else if _, err := ParseFrom(c.MailFrom); err != nil {
		bad("MAIL_FROM %q: %w", c.MailFrom, err)
	}
	if err := config.CheckBaseURL("PUBLIC_URL", c.PublicURL); err != nil {
		errs = append(errs, err)
	}
	if err := downloadlink.CheckKey("DOWNLOAD_LINK_KEY", c.DownloadLinkKey.Reveal()); err != nil {
		errs = append(errs, err)
	}
	if c.DownloadLinkTTL <= 0 {
		bad("DOWNLOAD_LINK_TTL %s: want a positive duration", c.DownloadLinkTTL)
	}
	if c.Concurrency < 1 {
		bad("CONCURRENCY %d: want at least 1", c.Concurrency)
	}
	if c.Prefetch < 0 {
		bad("PREFETCH %d: want 0 (same as CONCURRENCY) or more", c.Prefetch)
	}
	if c.MaxRedeliveries < 1 {
		bad("MAX_REDELIVERIES %d: want at least 1", c.MaxRedeliveries)
	}
	if c.MaxAttempts < 1 {
		bad("MAX_ATTEMPTS %d: want at least 1", c.MaxAttempts)
	}
	if c.RetryBackoff <= 0 {
		bad("RETRY_BACKOFF %s: want a positive duration", c.RetryBackoff)
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT %s: want a positive duration", c.ShutdownTimeout)
	}
	return errors.Join(errs...)
}

// resolved is c with its fallbacks applied: the original's GMAIL_ names
// when SMTP_USERNAME / SMTP_PASSWORD are unset, SMTP_TLS in lower case,
// and the mode's standard port when SMTP_PORT is unset.
func (c SMTPConfig) resolved() SMTPConfig {
	c.Username = cmp.Or(c.Username, c.GmailAddress)
	c.Password = cmp.Or(c.Password, c.GmailPassword)
	c.TLS = strings.ToLower(strings.TrimSpace(c.TLS))
	// An unknown mode is reported alone (587 keeps the port check quiet).
	c.Port = cmp.Or(c.Port, map[string]int{TLSStartTLS: 587, TLSImplicit: 465, TLSNone: 25}[c.TLS], 587)
	return c
}

// validate checks c as resolved.
func (c SMTPConfig) validate() error {
	c = c.resolved()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.TLS {
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		bad("SMTP_TLS %q: want starttls, tls or none", c.TLS)
	}
	if strings.TrimSpace(c.Host) == "" || hasControl(c.Host) || strings.ContainsAny(c.Host, " /") {
		bad("SMTP_HOST %q: want a host name or IP address", c.Host)
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("SMTP_PORT %d: want 1-65535", c.Port)
	}
	if hasControl(c.Username) {
		bad("SMTP_USERNAME (or GMAIL_ADDRESS) contains control characters")
	}
	if c.Username != "" && c.Password == "" {
		bad("SMTP_PASSWORD (or GMAIL_PASSWORD) is required with SMTP_USERNAME (or GMAIL_ADDRESS) %q", c.Username)
	}
	if c.Username == "" && c.Password != "" {
		bad("SMTP_USERNAME (or GMAIL_ADDRESS) is required with SMTP_PASSWORD (or GMAIL_PASSWORD)")
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			bad("SMTP_CA_FILE: %w", err)
		}
	}
	if c.Timeout <= 0 {
		bad("SMTP_TIMEOUT %s: want a positive duration", c.Timeout)
	}
	return errors.Join(errs...)
}

// ParseFrom parses a sender: an address with an optional display name.
func ParseFrom(s string) (*mail.Address, error) {
	if hasControl(s) {
		return nil, errors.New("contains control characters")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, err
	}
	return a, nil
}
