package testenv

import (
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
	t.Cleanup(func() { DeleteQueue(t, url, name, name+".dead") })
	return name
}
