package mq

import (
	"context"
	"fmt"
	"log/slog"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DialOptions returns a Conn (see New) once it is connected. It retries
// until the first connection is established or ctx ends (then it returns an
// error wrapping ErrUnavailable). After the first connection, ctx no longer
// matters: the Conn reconnects on its own until Close.
func DialOptions(ctx context.Context, url string, log *slog.Logger, opt Options) (*Conn, error) {
	c, err := New(url, log, opt)
	if err != nil {
		return nil, err
	}
	if _, err := c.session(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to rabbitmq at %s: %w", c.addr, err)
	}
	return c, nil
}

// RoundTrip asks the broker, on c's connection, whether queue exists (a
// passive declare) and waits for the answer: once it returns, the broker has
// read everything c sent before it, such as an ack, which has no reply.
func (c *Conn) RoundTrip(ctx context.Context, queue string) error {
	s, err := c.session(ctx)
	if err != nil {
		return fmt.Errorf("round trip: %w", err)
	}
	return withCtx(ctx, func() error {
		_, err := s.withChannel(func(ch *amqp.Channel) (bool, error) {
			_, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
			return err == nil, err
		})
		return err
	})
}
