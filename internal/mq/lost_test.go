package mq_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mp3converter/internal/mq"
	"mp3converter/internal/testenv"
)

// A handler whose delivery can no longer be acked (its connection died, so
// the broker has given the message back and will hand it to a consumer
// again) has its ctx cancelled at once: its work is wasted and must stop
// (the converter's ffmpeg is killed), rather than run on beside the
// consumer that gets the message next. The message is handled again after
// the reconnect, counted as a redelivery, and nothing is dead-lettered.
func TestHandlerCancelledWhenDeliveryLost(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	queue := testenv.Queue(t, url, "mq_lost")
	purl, proxy := testenv.RabbitMQProxy(t)
	log, _ := testenv.Logger(t)
	reg := prometheus.NewRegistry()
	m, err := mq.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	pub := dial(t, url, log, fastOptions(nil)) // not behind the proxy
	sub := dial(t, purl, log, fastOptions(m))

	type call struct {
		d   mq.Delivery
		ctx context.Context
	}
	calls := make(chan call, 10)
	cancelled := make(chan error, 10)
	startConsumer(t, sub, queue, mq.ConsumeOptions{MaxAttempts: 2, ShutdownTimeout: time.Second},
		func(ctx context.Context, d mq.Delivery) error {
			calls <- call{d, ctx}
			if d.Redeliveries > 0 {
				return nil // the second time round it succeeds
			}
			<-ctx.Done()
			cancelled <- ctx.Err()
			return ctx.Err()
		})
	publish(t, pub, queue, mq.Message{Body: []byte(`{"long":"job"}`), MessageID: "long-job"})

	var first call
	select {
	case first = <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not handled within 10s")
	}
	// Blocked on its ctx: nothing cancels it while the connection lives.
	select {
	case err := <-cancelled:
		t.Fatalf("handler cancelled (%v) with its connection alive", err)
	case <-time.After(300 * time.Millisecond):
	}

	cut := time.Now()
	proxy.Down()
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler's ctx error %v, want context.Canceled", err)
		}
		t.Logf("handler cancelled %s after the connection was cut", time.Since(cut).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		t.Fatal("the handler's ctx was not cancelled within 3s of its connection being cut")
	}
	if first.ctx.Err() == nil {
		t.Error("the first handling's ctx is not done")
	}

	proxy.Up()
	select {
	case again := <-calls:
		if again.d.MessageID != "long-job" || again.d.Redeliveries != 1 || again.d.Attempt != 1 {
			t.Errorf("handled again: id %q, redeliveries %d, attempt %d; want long-job, 1, 1",
				again.d.MessageID, again.d.Redeliveries, again.d.Attempt)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the message was not handled again within 15s of the reconnect")
	}
	testenv.Eventually(t, 10*time.Second, "the message acked", func() bool {
		return testenv.Metric(t, reg, "mq_messages_handled_total", map[string]string{"queue": queue, "outcome": mq.OutcomeAcked}) == 1
	})
	if n := testenv.Metric(t, reg, "mq_messages_handled_total", map[string]string{"queue": queue, "outcome": mq.OutcomeLost}); n != 1 {
		t.Errorf("outcome %s counted %v times, want 1", mq.OutcomeLost, n)
	}
	// The lost handling is neither retried (a copy would be a duplicate of
	// the redelivery) nor counted as a failed attempt.
	for _, o := range []string{mq.OutcomeRetried, mq.OutcomeDeadLettered} {
		if n := testenv.Metric(t, reg, "mq_messages_handled_total", map[string]string{"queue": queue, "outcome": o}); n != 0 {
			t.Errorf("outcome %s counted %v times", o, n)
		}
	}
	select {
	case c := <-calls:
		t.Errorf("handled a third time: %+v", c.d)
	case <-time.After(500 * time.Millisecond):
	}
	if n := depth(t, url, queue); n != 0 {
		t.Errorf("queue holds %d messages, want 0", n)
	}
	if n := depth(t, url, mq.DeadLetterQueue(queue)); n != 0 {
		t.Errorf("dead-letter queue holds %d messages, want 0", n)
	}
}

// A handler that returns an error wrapping ErrDeferred (somebody else is
// busy with the same work) has its message republished after a backoff
// without using up an attempt: it is never dead-lettered on that account,
// however many times it is deferred, up to MaxDeferrals; beyond that a
// deferral counts as a failed attempt, so that nothing loops for ever.
func TestDeferredIsNotAnAttempt(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)

	t.Run("deferred more often than MaxAttempts, then handled", func(t *testing.T) {
		t.Parallel()
		queue := testenv.Queue(t, url, "mq_defer")
		log, _ := testenv.Logger(t)
		reg := prometheus.NewRegistry()
		m, err := mq.NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		c := dial(t, url, log, fastOptions(m))
		const defers = 4
		calls := make(chan mq.Delivery, 20)
		startConsumer(t, c, queue, mq.ConsumeOptions{MaxAttempts: 2, RetryBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
			func(_ context.Context, d mq.Delivery) error {
				calls <- d
				if d.Deferrals < defers {
					return fmt.Errorf("held by another worker: %w", mq.ErrDeferred)
				}
				return nil
			})
		publish(t, c, queue, mq.Message{Body: []byte(`{}`), MessageID: "busy"})
		for i := range defers + 1 {
			select {
			case d := <-calls:
				if d.MessageID != "busy" || d.Attempt != 1 || d.Deferrals != i {
					t.Errorf("call %d: id %q attempt %d deferrals %d; want busy, 1, %d", i+1, d.MessageID, d.Attempt, d.Deferrals, i)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("call %d not made within 10s", i+1)
			}
		}
		testenv.Eventually(t, 5*time.Second, "acked", func() bool {
			return testenv.Metric(t, reg, "mq_messages_handled_total", map[string]string{"queue": queue, "outcome": mq.OutcomeAcked}) == 1
		})
		if n := testenv.Metric(t, reg, "mq_messages_handled_total", map[string]string{"queue": queue, "outcome": mq.OutcomeDeferred}); n != defers {
			t.Errorf("deferred outcomes %v, want %d", n, defers)
		}
		if n := depth(t, url, mq.DeadLetterQueue(queue)); n != 0 {
			t.Errorf("%d dead-lettered", n)
		}
	})

	t.Run("beyond MaxDeferrals a deferral is an attempt", func(t *testing.T) {
		t.Parallel()
		queue := testenv.Queue(t, url, "mq_defer_max")
		log, _ := testenv.Logger(t)
		c := dial(t, url, log, fastOptions(nil))
		calls := make(chan mq.Delivery, 20)
		startConsumer(t, c, queue, mq.ConsumeOptions{MaxAttempts: 2, MaxDeferrals: 2,
			RetryBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
			func(_ context.Context, d mq.Delivery) error {
				calls <- d
				return fmt.Errorf("held for ever: %w", mq.ErrDeferred)
			})
		publish(t, c, queue, mq.Message{Body: []byte(`{}`), MessageID: "stuck"})
		dead := mq.DeadLetterQueue(queue)
		testenv.Eventually(t, 10*time.Second, "the message dead-lettered", func() bool { return depth(t, url, dead) == 1 })
		d := rawGet(t, raw(t, url), dead)
		if d.Headers[mq.HeaderAttempts] != int32(2) || d.Headers[mq.HeaderDeferrals] != int32(2) {
			t.Errorf("dead-lettered headers %v: want %s 2 and %s 2", d.Headers, mq.HeaderAttempts, mq.HeaderDeferrals)
		}
		// Two deferrals, then two counted attempts.
		if n := len(calls); n != 4 {
			t.Errorf("handled %d times, want 4", n)
		}
	})
}
