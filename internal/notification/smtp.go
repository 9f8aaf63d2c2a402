package notification

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"sync"

	gomail "github.com/wneessen/go-mail"
)

// ErrRejected is wrapped by Send's error when the SMTP server refused for
// good (a 5xx reply: unknown recipient, bad credentials, message refused) or
// the message could not be built: sending it again cannot help.
var ErrRejected = errors.New("rejected by the SMTP server")

// SMTP sends emails through an SMTP server with github.com/wneessen/go-mail,
// one connection per email. It is safe for concurrent use.
type SMTP struct {
	cfg  SMTPConfig
	from *mail.Address
	tls  *tls.Config
}

// NewSMTP returns a sender for cfg (validated here too), sending as from.
func NewSMTP(cfg SMTPConfig, from string) (*SMTP, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.resolved()
	a, err := ParseFrom(from)
	if err != nil {
		return nil, fmt.Errorf("MAIL_FROM %q: %w", from, err)
	}
	tc := &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("SMTP_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("SMTP_CA_FILE %s: no PEM certificate found", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	return &SMTP{cfg: cfg, from: a, tls: tc}, nil
}

// Addr is the server's host:port.
func (s *SMTP) Addr() string { return net.JoinHostPort(s.cfg.Host, fmt.Sprint(s.cfg.Port)) }

// Send delivers e. Every step is bounded by the SMTP timeout, and ctx
// cancels the whole exchange. An error wrapping ErrRejected is permanent;
// any other (connection refused or lost, timeout, TLS failure, a 4xx reply)
// is worth retrying later.
func (s *SMTP) Send(ctx context.Context, e Email) error {
	msg, err := s.message(e)
	if err != nil {
		return fmt.Errorf("%w: build message: %w", ErrRejected, err)
	}

	// go-mail watches ctx only while dialling: closing the connection when
	// ctx ends interrupts a stuck exchange too.
	var (
		mu   sync.Mutex
		conn net.Conn
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if conn != nil {
			conn.Close()
		}
	})
	defer stop()
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: s.cfg.Timeout}
		c, err := d.DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		if s.cfg.TLS == TLSImplicit {
			tc := tls.Client(c, s.tls)
			if err := tc.HandshakeContext(dctx); err != nil {
				c.Close()
				return nil, err
			}
			c = tc
		}
		mu.Lock()
		defer mu.Unlock()
		if err := ctx.Err(); err != nil {
			c.Close()
			return nil, err
		}
		conn = c
		return c, nil
	}

	opts := []gomail.Option{
		gomail.WithPort(s.cfg.Port),
		gomail.WithTimeout(s.cfg.Timeout),
		gomail.WithDialContextFunc(dial),
	}
	switch s.cfg.TLS {
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory), gomail.WithTLSConfig(s.tls))
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL()) // the dial function does the handshake
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.cfg.Username != "" {
		// PLAIN and LOGIN refuse to send the password over an unencrypted
		// connection except to localhost; challenge-response mechanisms
		// come first where the connection is not encrypted.
		mechs := []gomail.SMTPAuthType{gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1,
			gomail.SMTPAuthPlain, gomail.SMTPAuthLogin, gomail.SMTPAuthCramMD5}
		if s.cfg.TLS == TLSNone {
			mechs = []gomail.SMTPAuthType{gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1,
				gomail.SMTPAuthCramMD5, gomail.SMTPAuthPlain, gomail.SMTPAuthLogin}
		}
		opts = append(opts, gomail.WithOpportunisticSMTPAuth(mechs...),
			gomail.WithUsername(s.cfg.Username), gomail.WithPassword(s.cfg.Password.Reveal()))
	}
	client, err := gomail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("%w: smtp client: %w", ErrRejected, err)
	}

	sc, err := client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return s.classify(ctx, "connect to "+s.Addr(), err)
	}
	if err := client.SendWithSMTPClient(sc, msg); err != nil {
		_ = client.CloseWithSMTPClient(sc)
		return s.classify(ctx, "send via "+s.Addr(), err)
	}
	// The server has accepted the message: a failed QUIT changes nothing
	// (and must not cause a second email).
	_ = client.CloseWithSMTPClient(sc)
	return nil
}

func (s *SMTP) message(e Email) (*gomail.Msg, error) {
	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	m.FromMailAddress(s.from)
	if err := m.To(e.To); err != nil {
		return nil, err
	}
	m.Subject(e.Subject)
	m.SetDate()
	if e.MessageID != "" {
		m.SetMessageIDWithValue(e.MessageID)
	} else {
		m.SetMessageID()
	}
	// RFC 3834: an automatic message; auto-responders should stay quiet.
	m.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	m.SetBodyString(gomail.TypeTextPlain, e.Text)
	if e.HTML != "" {
		m.AddAlternativeString(gomail.TypeTextHTML, e.HTML)
	}
	return m, nil
}

// classify wraps err as permanent (ErrRejected) or leaves it transient.
func (s *SMTP) classify(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w (%w)", what, ctx.Err(), err)
	}
	switch code := replyCode(err); {
	case code == 530 || code == 534 || code == 535 || code == 538:
		// Authentication refused: the server is misconfigured, not the
		// message. Retried, then dead-lettered, so the mail can be replayed
		// once the credentials are fixed instead of being lost.
		return fmt.Errorf("%s: smtp authentication failed: %w", what, err)
	case code >= 500 && code <= 599:
		return fmt.Errorf("%s: %w: %w", what, ErrRejected, err)
	}
	var se *gomail.SendError
	if errors.As(err, &se) {
		switch se.Reason {
		case gomail.ErrGetSender, gomail.ErrGetRcpts, gomail.ErrNoUnencoded:
			return fmt.Errorf("%s: %w: %w", what, ErrRejected, err)
		}
	}
	// 4xx replies, network errors, timeouts, TLS failures, a server that
	// does not offer STARTTLS or a usable AUTH mechanism: maybe later.
	return fmt.Errorf("%s: %w", what, err)
}

// replyCode returns the SMTP reply code in err, or 0.
func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	var se *gomail.SendError
	if errors.As(err, &se) {
		return se.ErrorCode()
	}
	return 0
}
