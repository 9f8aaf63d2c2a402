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

import "errors"

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

// ErrNoQueue is returned by QueueDepth when the queue does not exist.
var ErrNoQueue = errors.New("queue does not exist")

// Headers this package sets on the messages it republishes.
const (
	// HeaderAttempts is the 1-based number of the attempt a delivery is
	// (absent on a message that was never retried: attempt 1). On a
	// dead-lettered message it is the number of attempts made.
	HeaderAttempts = "x-attempts"
	// HeaderLastError is the error text of the last failed attempt (on
	// retried and dead-lettered messages).
	HeaderLastError = "x-last-error"
	// HeaderOriginalQueue names the queue a dead-lettered message came from.
	HeaderOriginalQueue = "x-original-queue"
	// HeaderDeadLetteredAt is when the message was dead-lettered (RFC 3339).
	HeaderDeadLetteredAt = "x-dead-lettered-at"
	// HeaderRedeliveries counts the times the broker redelivered a message
	// that a consumer had taken and never settled (it crashed, or lost its
	// connection, or handed it back at shutdown).
	HeaderRedeliveries = "x-redeliveries"
	// HeaderDeferrals counts the times a handler deferred the message
	// (ErrDeferred).
	HeaderDeferrals = "x-deferrals"
)

// DeadLetterQueue returns the name of queue's dead-letter queue.
func DeadLetterQueue(queue string) string { return queue + ".dead" }
