package mq_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"mp3converter/internal/mq"
	"mp3converter/internal/testenv"
)

// fastOptions keep reconnection and publish waits short.
func fastOptions(m *mq.Metrics) mq.Options {
	return mq.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		DialTimeout: 2 * time.Second, PublishTimeout: 5 * time.Second, Metrics: m}
}

func dial(t *testing.T, url string, log *slog.Logger, opt mq.Options) *mq.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := mq.DialOptions(ctx, url, log, opt)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func publish(t *testing.T, c *mq.Conn, queue string, msg mq.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Publish(ctx, queue, msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// consumer runs Consume in the background; stop cancels it and returns its
// result (it is also stopped at cleanup).
type consumer struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startConsumer(t *testing.T, c *mq.Conn, queue string, opt mq.ConsumeOptions, h mq.Handler) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cs := &consumer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(cs.done)
		cs.err = c.Consume(ctx, queue, opt, h)
	}()
	t.Cleanup(func() { cs.stop(t) })
	return cs
}

func (cs *consumer) stop(t *testing.T) error {
	t.Helper()
	cs.cancel()
	select {
	case <-cs.done:
		return cs.err
	case <-time.After(15 * time.Second):
		t.Fatal("Consume did not return within 15s of cancellation")
		return nil
	}
}

// depth is the number of ready messages in queue (0 if it does not exist).
func depth(t *testing.T, url, queue string) int {
	t.Helper()
	n, _ := testenv.QueueDepth(t, url, queue)
	return n
}

// raw opens a plain amqp091 channel, as another program would.
func raw(t *testing.T, url string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func rawChannel(t *testing.T, conn *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("raw channel: %v", err)
	}
	t.Cleanup(func() {
		if !ch.IsClosed() {
			ch.Close()
		}
	})
	return ch
}

// rawGet takes one message from queue (acked), failing if there is none.
func rawGet(t *testing.T, conn *amqp.Connection, queue string) amqp.Delivery {
	t.Helper()
	ch := rawChannel(t, conn)
	var (
		d  amqp.Delivery
		ok bool
	)
	testenv.Eventually(t, 5*time.Second, "a message in "+queue, func() bool {
		var err error
		d, ok, err = ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		return ok
	})
	return d
}

// slowLink returns url redirected through a TCP forwarder that holds what
// the client sends for delay before passing it on, as a loaded machine or a
// slow network does: bytes the client has written (an ack, which has no
// reply) can still be on their way when the connection is cut behind them.
func slowLink(t *testing.T, url string, delay time.Duration) string {
	t.Helper()
	u, err := amqp.ParseURI(url)
	if err != nil {
		t.Fatalf("slow link to %s: %v", url, err)
	}
	target := net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("slow link: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go forwardSlowly(c, target, delay)
		}
	}()
	u.Host = "127.0.0.1"
	u.Port = ln.Addr().(*net.TCPAddr).Port
	return u.String()
}

// forwardSlowly copies c to target, each chunk delay after it was read, and
// target to c at once, until either side closes; then it closes both, and
// what was still held is lost.
func forwardSlowly(c net.Conn, target string, delay time.Duration) {
	defer c.Close()
	u, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer u.Close()
	type chunk struct {
		b   []byte
		due time.Time
	}
	held := make(chan chunk, 1024)
	done := make(chan struct{}, 2)
	go func() {
		defer close(held)
		for {
			b := make([]byte, 32<<10)
			n, err := c.Read(b)
			if n > 0 {
				held <- chunk{b[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		failed := false
		for ch := range held {
			if failed {
				continue // drain, so that the reader never blocks
			}
			time.Sleep(time.Until(ch.due)) // scenario, not evidence: the injected latency
			if _, err := u.Write(ch.b); err != nil {
				failed = true
				done <- struct{}{}
			}
		}
		if !failed {
			done <- struct{}{}
		}
	}()
	go func() {
		_, _ = io.Copy(c, u)
		done <- struct{}{}
	}()
	<-done
}
