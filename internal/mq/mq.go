// Package mq holds the AMQP (RabbitMQ) pieces every service shares: a
// self-healing connection, a confirmed publisher and a competing-consumer
// loop with bounded retries and a dead-letter queue.
//
// Messages go through the default exchange with the queue name as routing
// key, persistent, as the original Python services sent them. Queues are
// declared by code when absent (durable, no arguments) and used as they are
// when an operator created them beforehand: those of Options.Declare on
// every connect, any other the first time it is used on a connection.
//
// Delivery is at least once: a message is acked only after the work it
// triggered (or its retry copy, or its dead-letter copy) is safe, so a
// handler must tolerate seeing a message twice.
package mq

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"mp3converter/internal/config"
)

// ErrUnavailable is wrapped by every error caused by the broker being
// unreachable, a closed channel, a negative acknowledgement or a publish
// that was not confirmed in time.
var ErrUnavailable = errors.New("message broker unavailable")

// ErrPermanent is wrapped by a handler's error when retrying cannot help
// (not a video, no audio track): the message is acked and not retried. The
// handler reports the failure to the user itself.
var ErrPermanent = errors.New("permanent failure")

// ErrDeferred is wrapped by a handler's error when the message cannot be
// handled yet although nothing failed (another consumer is busy with the
// same work): the message is republished after a backoff, as after a
// transient error, but the attempt is not counted, so it is never
// dead-lettered on this account (see ConsumeOptions.MaxDeferrals).
var ErrDeferred = errors.New("deferred")

// ErrClosed is returned by operations on a Conn after Close.
var ErrClosed = errors.New("mq connection closed")

// DeadLetterQueue returns the name of queue's dead-letter queue.
func DeadLetterQueue(queue string) string { return queue + ".dead" }

// BrokerConfig locates the broker; every service that talks to it embeds it.
type BrokerConfig struct {
	RabbitMQURL config.Secret `env:"RABBITMQ_URL" envDefault:"amqp://guest:guest@rabbitmq:5672/"`
}

// Connect registers the broker metrics in reg and returns a Conn named
// name (as the management UI shows it) that declares the queues declare
// at every connect (see Options.Declare).
func (c BrokerConfig) Connect(name string, reg prometheus.Registerer, log *slog.Logger, declare ...string) (*Conn, error) {
	m, err := NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return New(c.RabbitMQURL.Reveal(), log, Options{ConnectionName: name, Metrics: m, Declare: declare})
}
