package mq

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"mp3converter/internal/logging"
)

// Message is what Publish sends.
type Message struct {
	Body []byte
	// MessageID identifies the message in logs end to end; Publish fills in
	// a random one when empty.
	MessageID string
	// Headers are AMQP headers: values must be AMQP-encodable (string,
	// bool, integers, floats, []byte, time.Time, nested amqp tables).
	Headers map[string]any
}

// Publish sends msg to queue through the default exchange (routing key =
// queue name), persistent, as application/json, and returns nil only once
// the broker has confirmed it. The queue is declared (durable) the first
// time it is used on a connection if it does not exist.
//
// While the broker is unreachable Publish waits for the connection to come
// back, within ctx (and Options.PublishTimeout); if the connection drops
// before the broker confirmed, the message is sent again on the next
// connection (so a consumer may, rarely, see it twice). It fails with an
// error wrapping ErrUnavailable when ctx ends first, or at once when the
// broker nacks. Safe for concurrent use.
func (c *Conn) Publish(ctx context.Context, queue string, msg Message) error {
	id := msg.MessageID
	if id == "" {
		id = logging.NewID()
	}
	p := amqp.Publishing{
		Headers:      toTable(msg.Headers),
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Timestamp:    time.Now().UTC().Truncate(time.Second),
		Body:         msg.Body,
	}
	return c.publish(ctx, queue, p, true)
}

// publish publishes p to queue and waits for the broker's confirm, trying
// again on a fresh channel or connection. With acrossLoss false it does not
// outlive the connection: a consumer republishing the message it holds
// stops there, since the broker gives that message back anyway when the
// connection dies, and another copy would be a duplicate.
func (c *Conn) publish(ctx context.Context, queue string, p amqp.Publishing, acrossLoss bool) error {
	if queue == "" {
		return errors.New("publish: empty queue name")
	}
	if err := p.Headers.Validate(); err != nil {
		return fmt.Errorf("publish to queue %s: invalid headers: %w", queue, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opt.PublishTimeout)
	defer cancel()
	// A channel the broker closed on a live connection (say, over another
	// publisher's message) is worth a few more tries; a lost connection is
	// worth waiting for, within ctx.
	channelErrs := 0
	for attempt := 1; ; attempt++ {
		s, err := c.session(ctx)
		if err != nil {
			c.m.onPublish(queue, false)
			return fmt.Errorf("publish to queue %s: %w", queue, err)
		}
		retry, err := c.publishOnce(ctx, s, queue, p)
		if err == nil {
			c.m.onPublish(queue, true)
			return nil
		}
		if retry && !s.conn.IsClosed() {
			channelErrs++
		}
		if !retry || ctx.Err() != nil || channelErrs > 3 || (!acrossLoss && s.conn.IsClosed()) {
			c.m.onPublish(queue, false)
			return fmt.Errorf("publish to queue %s: %w", queue, err)
		}
		c.log.Debug("publish interrupted, retrying", "queue", queue, "message_id", p.MessageId,
			"attempt", attempt, "err", err)
		// Give the redial loop a moment to notice the loss before retrying.
		if !sleep(ctx, min(time.Duration(attempt)*50*time.Millisecond, time.Second)) {
			c.m.onPublish(queue, false)
			return fmt.Errorf("publish to queue %s: %w: %w (last error: %v)", queue, ErrUnavailable, ctx.Err(), err)
		}
	}
}

// publishOnce publishes on s and waits for the confirmation. Every error
// wraps ErrUnavailable; retry says whether trying again on a fresh channel
// or connection can help (the channel or connection went away) as opposed to
// a nack.
func (c *Conn) publishOnce(ctx context.Context, s *session, queue string, p amqp.Publishing) (retry bool, err error) {
	var (
		ch *amqp.Channel
		dc *amqp.DeferredConfirmation
	)
	err = withCtx(ctx, func() error {
		if err := s.declare(queue); err != nil {
			return err
		}
		var err error
		if ch, err = s.publisher(); err != nil {
			return err
		}
		dc, err = ch.PublishWithDeferredConfirm("", queue, false, false, p)
		return err
	})
	if err != nil {
		// A refusal on a live connection (access refused, a queue locked by
		// another connection) will not go away by retrying.
		retry := s.conn.IsClosed() || errors.Is(err, amqp.ErrClosed) || ctx.Err() != nil
		return retry, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	acked, err := dc.WaitContext(ctx)
	switch {
	case err != nil:
		return true, fmt.Errorf("%w: waiting for the broker's confirmation: %w", ErrUnavailable, err)
	case acked:
		return false, nil
	case ch.IsClosed():
		return true, fmt.Errorf("%w: channel closed before the broker confirmed", ErrUnavailable)
	default:
		return false, fmt.Errorf("%w: broker rejected the message (nack)", ErrUnavailable)
	}
}

// toTable converts headers to an amqp.Table, nested maps and slices
// included (amqp091 accepts only amqp.Table and []any for those).
func toTable(h map[string]any) amqp.Table {
	if h == nil {
		return nil
	}
	t := make(amqp.Table, len(h))
	for k, v := range h {
		t[k] = toField(v)
	}
	return t
}

func toField(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return toTable(v)
	case amqp.Table:
		return toTable(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = toField(e)
		}
		return out
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out
	}
	return v
}
