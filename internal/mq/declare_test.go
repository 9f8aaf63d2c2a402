package mq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"mp3converter/internal/mq"
	"mp3converter/internal/testenv"
)

// queueExists asks the broker directly (a passive declare on a throwaway
// channel) whether queue exists.
func queueExists(t *testing.T, conn *amqp.Connection, queue string) bool {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("raw channel: %v", err)
	}
	defer func() {
		if !ch.IsClosed() {
			ch.Close()
		}
	}()
	_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return false
	}
	if err != nil {
		t.Fatalf("passive declare %s: %v", queue, err)
	}
	return true
}

func deleteQueue(t *testing.T, conn *amqp.Connection, queue string) {
	t.Helper()
	if _, err := rawChannel(t, conn).QueueDelete(queue, false, false, false); err != nil {
		t.Fatalf("delete queue %s: %v", queue, err)
	}
}

// A Conn with Options.Declare creates its queues when it connects, before
// anything is published or consumed, the way Publish declares them: a queue
// an operator made beforehand (with arguments) is accepted as it is.
func TestDeclareAtConnect(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	rc := raw(t, url)
	absent := testenv.Queue(t, url, "mq_decl_absent")
	consumed := testenv.Queue(t, url, "mq_decl_consumed")
	operators := testenv.Queue(t, url, "mq_decl_operator")
	args := amqp.Table{"x-max-length": int32(1000)}
	if _, err := rawChannel(t, rc).QueueDeclare(operators, true, false, false, false, args); err != nil {
		t.Fatalf("operator declare: %v", err)
	}
	want := map[string]amqp.Table{absent: nil, consumed: nil, mq.DeadLetterQueue(consumed): nil, operators: args}
	for q := range want {
		if q != operators && queueExists(t, rc, q) {
			t.Fatalf("queue %s exists before the Conn connected", q)
		}
	}

	log, _ := testenv.Logger(t)
	opt := fastOptions(nil)
	opt.Declare = []string{absent, consumed, mq.DeadLetterQueue(consumed), operators}
	c := dial(t, url, log, opt)
	// Dial returns once the Conn is ready: the queues exist now, not
	// eventually, and without any Publish or Consume.
	for q, a := range want {
		if !queueExists(t, rc, q) {
			t.Errorf("queue %s was not declared at connect", q)
			continue
		}
		// Redeclaring with the expected properties fails (and closes the
		// channel) if the queue is not durable or has other arguments.
		if _, err := rawChannel(t, rc).QueueDeclare(q, true, false, false, false, a); err != nil {
			t.Errorf("queue %s is not durable with arguments %v: %v", q, a, err)
		}
	}
	if err := c.Ready(context.Background()); err != nil {
		t.Errorf("Ready = %v", err)
	}
}

// After the broker went away (a fresh broker may replace the old one, with
// none of the queues), the Conn declares its queues again on reconnecting,
// before it reports ready.
func TestDeclareAfterReconnect(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	rc := raw(t, url)
	q := testenv.Queue(t, url, "mq_decl_reconnect")
	queues := []string{q, mq.DeadLetterQueue(q)}
	purl, proxy := testenv.RabbitMQProxy(t)
	log, _ := testenv.Logger(t)
	opt := fastOptions(nil)
	opt.Declare = queues
	c := dial(t, purl, log, opt)
	for _, name := range queues {
		if !queueExists(t, rc, name) {
			t.Fatalf("queue %s was not declared at connect", name)
		}
	}

	for round := 1; round <= 2; round++ {
		proxy.Down()
		testenv.Eventually(t, 5*time.Second, "Ready reports the outage", func() bool {
			return errors.Is(c.Ready(context.Background()), mq.ErrUnavailable)
		})
		for _, name := range queues {
			deleteQueue(t, rc, name)
		}
		proxy.Up()
		testenv.Eventually(t, 10*time.Second, "the Conn reconnects", func() bool {
			return c.Ready(context.Background()) == nil
		})
		// Ready means declared: no waiting for the queues.
		for _, name := range queues {
			if !queueExists(t, rc, name) {
				t.Errorf("round %d: queue %s not declared again after reconnecting", round, name)
			}
		}
	}
}

// A queue that cannot be declared keeps the Conn from reporting ready, with
// the reason; the other programs' view of the broker is not disturbed.
func TestDeclareFailureNotReady(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	log, logs := testenv.Logger(t)
	opt := fastOptions(nil)
	// The broker refuses to create queues named amq.* (ACCESS_REFUSED).
	opt.Declare = []string{"amq." + testenv.Name("mq_decl_refused")}
	c, err := mq.New(url, log, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Publish(ctx, testenv.Queue(t, url, "mq_decl_unused"), mq.Message{Body: []byte(`{}`)}); !errors.Is(err, mq.ErrUnavailable) {
		t.Errorf("Publish while the declare fails = %v, want an error wrapping ErrUnavailable", err)
	}
	err = c.Ready(context.Background())
	if !errors.Is(err, mq.ErrUnavailable) || !strings.Contains(err.Error(), opt.Declare[0]) {
		t.Errorf("Ready = %v, want ErrUnavailable naming queue %s", err, opt.Declare[0])
	}
	testenv.Eventually(t, 5*time.Second, "the failure logged", func() bool {
		return strings.Contains(logs.String(), "rabbitmq connect failed") && strings.Contains(logs.String(), opt.Declare[0])
	})
}
