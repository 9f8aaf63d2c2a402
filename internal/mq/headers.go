package mq

import (
	"math"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

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

const maxErrorHeader = 1000 // bytes of the error text kept in HeaderLastError

// attempts reads HeaderAttempts: 1 when absent or invalid.
func attempts(h amqp.Table) int { return max(headerCount(h[HeaderAttempts]), 1) }

// headerCount reads a counter header (0 when absent or not a number).
func headerCount(h any) int {
	var n int64
	switch v := h.(type) {
	case int:
		n = int64(v)
	case int8:
		n = int64(v)
	case int16:
		n = int64(v)
	case int32:
		n = int64(v)
	case int64:
		n = v
	case uint8:
		n = int64(v)
	case uint16:
		n = int64(v)
	case uint32:
		n = int64(v)
	case float32:
		n = int64(v)
	case float64:
		n = int64(v)
	case string:
		n, _ = strconv.ParseInt(v, 10, 64)
	}
	if n < 1 || n > math.MaxInt32 {
		return 0
	}
	return int(n)
}

// deadHeaders adds what a dead-lettered copy of f carries.
func (cs *consumer) deadHeaders(h amqp.Table, f *inflight) {
	h[HeaderAttempts] = int32(f.attempt)
	h[HeaderOriginalQueue] = cs.queue
	h[HeaderDeadLetteredAt] = time.Now().UTC().Format(time.RFC3339)
}
