package testenv

import (
	"errors"
	"net"
	"strconv"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQ returns the AMQP URL of the stack's RabbitMQ server.
func RabbitMQ(t testing.TB) string {
	t.Helper()
	return Getenv(t, "RABBITMQ_URL")
}

// RabbitMQProxy returns an AMQP URL that reaches the stack's RabbitMQ
// through a Proxy, so that a test can make the broker look down (Down) and
// come back (Up) without disturbing other tests.
func RabbitMQProxy(t testing.TB) (string, *Proxy) {
	t.Helper()
	u, err := amqp.ParseURI(RabbitMQ(t))
	if err != nil {
		t.Fatalf("RABBITMQ_URL: %v", err)
	}
	p := NewProxy(t, net.JoinHostPort(u.Host, strconv.Itoa(u.Port)))
	host, port, err := net.SplitHostPort(p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	u.Host = host
	u.Port, _ = strconv.Atoi(port)
	return u.String(), p
}

// Queue returns a queue name private to the test (prefix plus a random
// suffix). It does not create the queue; the queue and its dead-letter
// queue <name>.dead are deleted when the test ends.
func Queue(t testing.TB, url, prefix string) string {
	t.Helper()
	name := Name(prefix)
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Errorf("delete test queue %s: %v", name, err)
			return
		}
		defer conn.Close()
		for _, q := range []string{name, name + ".dead"} {
			// A channel per delete: a failed delete closes its channel.
			ch, err := conn.Channel()
			if err != nil {
				t.Errorf("delete test queue %s: %v", q, err)
				return
			}
			_, err = ch.QueueDelete(q, false, false, false)
			var ae *amqp.Error
			if err != nil && !(errors.As(err, &ae) && ae.Code == amqp.NotFound) {
				t.Errorf("delete test queue %s: %v", q, err)
			}
			if !ch.IsClosed() {
				ch.Close()
			}
		}
	})
	return name
}
