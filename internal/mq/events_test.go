package mq_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"mp3converter/internal/mq"
	"mp3converter/internal/testenv"
)

// Every listener gets every event announced while it is bound; a listener
// whose connection broke binds again and says so (onGap); with no
// connection, Announce drops the event at once instead of waiting.
func TestEvents(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	exchange := testenv.Name("events")
	t.Cleanup(func() {
		if conn, err := amqp.Dial(testenv.RabbitMQ(t)); err == nil {
			if ch, err := conn.Channel(); err == nil {
				_ = ch.ExchangeDelete(exchange, false, false)
			}
			conn.Close()
		}
	})
	proxied, proxy := testenv.RabbitMQProxy(t)
	direct := dial(t, testenv.RabbitMQ(t), log, fastOptions(nil))
	viaProxy := dial(t, proxied, log, fastOptions(nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type listener struct {
		got  chan string
		gaps chan struct{}
	}
	listen := func(c *mq.Conn) listener {
		l := listener{got: make(chan string, 100), gaps: make(chan struct{}, 10)}
		go func() {
			_ = c.Listen(ctx, exchange, func(b []byte) { l.got <- string(b) }, func() { l.gaps <- struct{}{} })
		}()
		select {
		case <-l.gaps:
		case <-time.After(20 * time.Second):
			t.Fatal("the listener never bound")
		}
		return l
	}
	a, b := listen(direct), listen(viaProxy)
	expect := func(l listener, want string) {
		t.Helper()
		select {
		case got := <-l.got:
			if got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no event %q", want)
		}
	}
	if err := direct.Announce(ctx, exchange, []byte("one")); err != nil {
		t.Fatal(err)
	}
	expect(a, "one")
	expect(b, "one")

	// b's connection breaks: it binds again, and says events were missed.
	proxy.Down()
	if err := viaProxy.Announce(ctx, exchange, []byte("lost")); !errors.Is(err, mq.ErrUnavailable) {
		// The Conn may not have noticed the loss yet: then the event goes
		// into a dead connection, which is what at most once allows.
		t.Logf("announce on a broken connection: %v", err)
	}
	proxy.Up()
	select {
	case <-b.gaps:
	case <-time.After(30 * time.Second):
		t.Fatal("the listener did not bind again after the connection came back")
	}
	if err := direct.Announce(ctx, exchange, []byte("two")); err != nil {
		t.Fatal(err)
	}
	expect(a, "two")
	expect(b, "two")

	// Closed: Announce answers without waiting for a connection.
	viaProxy.Close()
	if err := viaProxy.Announce(ctx, exchange, []byte("x")); !errors.Is(err, mq.ErrUnavailable) {
		t.Fatalf("announce on a closed Conn: %v, want ErrUnavailable", err)
	}
}
