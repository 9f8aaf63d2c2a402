package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// QueueDepth returns the number of messages ready for delivery in queue
// (not counting those delivered and not yet acked), asked on a connection
// of its own to the broker at url; ok is false if the queue does not exist.
func QueueDepth(t testing.TB, url, queue string) (n int, ok bool) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("queue depth %s: %v", queue, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("queue depth %s: %v", queue, err)
	}
	defer func() {
		if !ch.IsClosed() {
			ch.Close()
		}
	}()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	var ae *amqp.Error
	switch {
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		return 0, false
	case err != nil:
		t.Fatalf("queue depth %s: %v", queue, err)
	}
	return q.Messages, true
}

// Connected waits until c (an *mq.Conn) is connected, failing the test
// after 10 s.
func Connected(t testing.TB, c interface{ Ready(context.Context) error }) {
	t.Helper()
	Eventually(t, 10*time.Second, "connected to the broker", func() bool {
		return c.Ready(context.Background()) == nil
	})
}
