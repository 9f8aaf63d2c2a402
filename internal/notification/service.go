// Package notification is the notification service: a competing consumer
// on MP3_QUEUE that emails each user when their MP3 is ready (or when the
// conversion failed), through any SMTP server (Gmail by default). Before
// emailing it records the outcome in MongoDB (see Recorder), for the MP3s
// that the original converter stores without a job update or an owner.
//
// Transient failures (MongoDB or the SMTP server unreachable, a 4xx reply) are
// retried by internal/mq with backoff and dead-lettered after a bounded
// number of attempts; permanent ones (a 5xx reply, an invalid recipient, a
// malformed message) are logged, counted and acked, never looped.
package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"mp3converter/internal/message"
	"mp3converter/internal/mq"
)

// Sender delivers one email. Its error wraps ErrRejected when retrying
// cannot help; any other error is transient.
type Sender interface {
	Send(ctx context.Context, e Email) error
}

// Results counted by notifications_total.
const (
	ResultSent    = "sent"    // the SMTP server accepted the email
	ResultFailed  = "failed"  // given up: invalid message or recipient, 5xx, or the last attempt failed
	ResultRetried = "retried" // a transient failure; the message is tried again later
)

// Metrics counts notifications.
type Metrics struct {
	total *prometheus.CounterVec
}

// NewMetrics registers notifications_total{result} in reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "notifications_total",
		Help: "Notification messages handled, by result (sent, failed: given up, retried: transient failure, tried again later).",
	}, []string{"result"})}
	if err := reg.Register(m.total); err != nil {
		return nil, fmt.Errorf("register notification metrics: %w", err)
	}
	for _, r := range []string{ResultSent, ResultFailed, ResultRetried} {
		m.total.WithLabelValues(r)
	}
	return m, nil
}

func (m *Metrics) inc(result string) {
	if m != nil {
		m.total.WithLabelValues(result).Inc()
	}
}

// Options tune a Service.
type Options struct {
	Log     *slog.Logger
	Metrics *Metrics // nil records nothing
}

// Service turns messages of MP3_QUEUE into emails.
type Service struct {
	send    Sender
	compose *Composer
	rec     *Recorder
	log     *slog.Logger
	m       *Metrics
}

// New returns a Service that records with r, composes with c and sends
// with s.
func New(s Sender, c *Composer, r *Recorder, opt Options) (*Service, error) {
	if s == nil || c == nil || r == nil {
		return nil, errors.New("notification: nil sender, composer or recorder")
	}
	if opt.Log == nil {
		return nil, errors.New("notification: nil logger")
	}
	return &Service{send: s, compose: c, rec: r, log: opt.Log, m: opt.Metrics}, nil
}

// Handle is the mq.Handler: it records the outcome (Recorder.Record), then
// emails the user named in the message. It returns nil once the SMTP server
// accepted the email, an error wrapping mq.ErrPermanent when the message
// can never be sent (malformed, invalid recipient or filename, a 5xx reply),
// and any other error when recording or sending may work later: nothing is
// emailed before the outcome is recorded.
func (s *Service) Handle(ctx context.Context, d mq.Delivery) error {
	log := s.log.With("message_id", d.MessageID, "attempt", d.Attempt)
	m, err := message.Decode(d.Body)
	if err != nil {
		s.m.inc(ResultFailed)
		log.Error("malformed message, dropping it", "err", err, "bytes", len(d.Body))
		return fmt.Errorf("%w: %w", mq.ErrPermanent, err)
	}
	log = log.With("video_fid", m.VideoFID)
	if m.MP3FID != nil {
		log = log.With("mp3_fid", *m.MP3FID)
	}
	if err := s.rec.Record(ctx, log, m); err != nil {
		s.transient(log, d, "recording the outcome failed", err)
		return err
	}
	e, err := s.compose.Compose(m)
	if err != nil {
		s.m.inc(ResultFailed)
		log.Error("cannot notify, dropping the message", "err", err)
		return fmt.Errorf("%w: %w", mq.ErrPermanent, err)
	}
	log = log.With("to", e.To, "subject", e.Subject)
	if err := s.send.Send(ctx, e); err != nil {
		if errors.Is(err, ErrRejected) {
			s.m.inc(ResultFailed)
			log.Error("email rejected, not retrying", "err", err)
			return fmt.Errorf("%w: %w", mq.ErrPermanent, err)
		}
		s.transient(log, d, "sending failed", err)
		return err
	}
	s.m.inc(ResultSent)
	log.Info("email sent")
	return nil
}

// transient counts and logs a failure that internal/mq retries (or, on the
// last attempt, dead-letters).
func (s *Service) transient(log *slog.Logger, d mq.Delivery, what string, err error) {
	if d.LastAttempt {
		s.m.inc(ResultFailed)
		log.Error(what+" on the last attempt, dead-lettering", "err", err)
		return
	}
	s.m.inc(ResultRetried)
	log.Warn(what+", will retry", "err", err)
}
