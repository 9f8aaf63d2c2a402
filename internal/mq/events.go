package mq

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Events are small notices fanned out to every listening process, at most
// once: unlike Publish and Consume, nothing is confirmed, retried or kept
// for a listener that is not there. They suit hints whose loss a reader
// makes up for by reading the state again (see Listen's onGap).

// eventsMaxLength bounds a listener's queue: past it the broker drops the
// oldest events (a listener that far behind reads the state again anyway).
const eventsMaxLength = 10000

// Announce publishes body on the fanout exchange (declared durable once per
// connection). It never waits for the connection: with none, or on any
// error, the event is dropped and the error returned for the caller to log.
func (c *Conn) Announce(ctx context.Context, exchange string, body []byte) error {
	c.mu.Lock()
	s := c.cur
	c.mu.Unlock()
	if s == nil || s.conn.IsClosed() {
		return fmt.Errorf("announce on %s: %w: not connected", exchange, ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := withCtx(ctx, func() error {
		if err := s.declareFanout(exchange); err != nil {
			return err
		}
		ch, err := s.publisher()
		if err != nil {
			return err
		}
		return ch.PublishWithContext(ctx, exchange, "", false, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Transient, Body: body,
			Timestamp: time.Now().UTC().Truncate(time.Second),
		})
	})
	if err != nil {
		return fmt.Errorf("announce on %s: %w: %w", exchange, ErrUnavailable, err)
	}
	return nil
}

// declareFanout declares the durable fanout exchange, once per connection.
func (s *session) declareFanout(exchange string) error {
	key := "exchange " + exchange
	s.mu.Lock()
	done := s.declared[key]
	s.mu.Unlock()
	if done {
		return nil
	}
	if _, err := s.withChannel(func(ch *amqp.Channel) (bool, error) {
		return true, ch.ExchangeDeclare(exchange, amqp.ExchangeFanout, true, false, false, false, nil)
	}); err != nil {
		return fmt.Errorf("declare exchange %s: %w", exchange, err)
	}
	s.mu.Lock()
	s.declared[key] = true
	s.mu.Unlock()
	return nil
}

// Listen calls h with every event announced on exchange until ctx ends,
// through a queue of this process's own (named by the broker, exclusive,
// deleted with its connection, bounded). After each loss of the connection
// it binds a new queue when the connection is back. onGap is called each
// time the queue is bound, the first time included: events announced
// before that were missed. h runs on Listen's goroutine, one event at a
// time, and must not block for long.
func (c *Conn) Listen(ctx context.Context, exchange string, h func([]byte), onGap func()) error {
	for {
		s, err := c.session(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = c.listenOnce(ctx, s, exchange, h, onGap)
		if ctx.Err() != nil {
			return nil
		}
		c.log.Warn("event listener interrupted, listening again", "exchange", exchange, "err", err)
		if !sleep(ctx, 500*time.Millisecond) {
			return nil
		}
	}
}

func (c *Conn) listenOnce(ctx context.Context, s *session, exchange string, h func([]byte), onGap func()) error {
	var (
		ch         *amqp.Channel
		deliveries <-chan amqp.Delivery
	)
	err := withCtx(ctx, func() error {
		if err := s.declareFanout(exchange); err != nil {
			return err
		}
		var err error
		if ch, err = s.conn.Channel(); err != nil {
			return fmt.Errorf("open channel: %w", err)
		}
		q, err := ch.QueueDeclare("", false, true, true, false,
			amqp.Table{"x-max-length": int32(eventsMaxLength), "x-overflow": "drop-head"})
		if err != nil {
			return fmt.Errorf("declare the listener's queue: %w", err)
		}
		if err := ch.QueueBind(q.Name, "", exchange, false, nil); err != nil {
			return fmt.Errorf("bind the listener's queue to %s: %w", exchange, err)
		}
		deliveries, err = ch.Consume(q.Name, "", true, true, false, false, nil)
		return err
	})
	if err != nil {
		if ch != nil {
			_ = ch.Close()
		}
		return err
	}
	defer ch.Close()
	onGap()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("the listener's channel closed")
			}
			h(d.Body)
		}
	}
}
