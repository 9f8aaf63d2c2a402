package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// QueueDepth, Depth, Drain, Publish and DeleteQueue are the test's own
// eyes and hands on the broker: each call opens a connection of its own,
// does its one thing and closes it, whatever the code under test is doing
// to its connections.

// QueueDepth returns the number of messages ready for delivery in queue
// (not counting those delivered and not yet acked), asked on a connection
// of its own to the broker at url; ok is false if the queue does not exist.
func QueueDepth(t testing.TB, url, queue string) (n int, ok bool) {
	t.Helper()
	n, ok, err := Depth(url, queue)
	if err != nil {
		t.Fatalf("queue depth %s: %v", queue, err)
	}
	return n, ok
}

// Depth is QueueDepth for a caller that has no test to fail (a goroutine
// sampling depths while the test runs): it returns the error instead.
func Depth(url, queue string) (n int, ok bool, err error) {
	err = onChannel(url, func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		n = q.Messages
		return err
	})
	if isNotFound(err) {
		return 0, false, nil
	}
	return n, err == nil, err
}

// Drain takes every message ready in queue (acked as it is taken) and
// returns them in queue order; a queue that does not exist holds none.
func Drain(t testing.TB, url, queue string) []amqp.Delivery {
	t.Helper()
	var out []amqp.Delivery
	err := onChannel(url, func(ch *amqp.Channel) error {
		for {
			d, ok, err := ch.Get(queue, true)
			if err != nil || !ok {
				return err
			}
			out = append(out, d)
		}
	})
	if err != nil && !isNotFound(err) {
		t.Fatalf("drain %s: %v", queue, err)
	}
	return out
}

// Publish puts msg on queue through the default exchange, as a producer
// other than the code under test, and waits until the broker confirms it.
func Publish(t testing.TB, url, queue string, msg amqp.Publishing) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := onChannel(url, func(ch *amqp.Channel) error {
		if err := ch.Confirm(false); err != nil {
			return err
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
		if err != nil {
			return err
		}
		ok, err := dc.WaitContext(ctx)
		if err == nil && !ok {
			err = errors.New("nacked by the broker")
		}
		return err
	})
	if err != nil {
		t.Fatalf("publish to %s: %v", queue, err)
	}
}

// DeleteQueue deletes each of queues (a queue that does not exist is as
// good as deleted). A failure is reported with t.Errorf and the others are
// still deleted, so that a cleanup removes all it can.
func DeleteQueue(t testing.TB, url string, queues ...string) {
	t.Helper()
	for _, q := range queues {
		err := onChannel(url, func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(q, false, false, false)
			return err
		})
		if err != nil && !isNotFound(err) {
			t.Errorf("delete queue %s: %v", q, err)
		}
	}
}

// Connected waits until c (an *mq.Conn) is connected, failing the test
// after 10 s.
func Connected(t testing.TB, c interface{ Ready(context.Context) error }) {
	t.Helper()
	Eventually(t, 10*time.Second, "connected to the broker", func() bool {
		return c.Ready(context.Background()) == nil
	})
}

// onChannel runs f on a channel of a new connection to the broker at url,
// and closes the connection (and with it the channel) when f returns.
func onChannel(url string, f func(*amqp.Channel) error) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return f(ch)
}

// isNotFound reports whether err is the broker's NOT_FOUND: no such queue.
func isNotFound(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound
}
