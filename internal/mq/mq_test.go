package mq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"mp3converter/internal/logging"
	"mp3converter/internal/mq"
	"mp3converter/internal/testenv"
)

func TestPublishConsumeRoundTrip(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	tests := []struct {
		name string
		msg  mq.Message
	}{
		{"original's message JSON", mq.Message{
			Body:      []byte(`{"video_fid": "65f0c0ffee", "mp3_fid": null, "username": "a@b.c"}`),
			MessageID: "msg-1",
		}},
		{"generated message ID and headers", mq.Message{
			Body:    []byte(`{}`),
			Headers: map[string]any{"job_id": "j1", "n": int32(7)},
		}},
		{"large binary body", mq.Message{Body: big, MessageID: "big"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			queue := testenv.Queue(t, url, "mq_roundtrip")
			log, logs := testenv.Logger(t)
			c := dial(t, url, log, fastOptions(nil))

			// What is on the wire, as another program sees it.
			publish(t, c, queue, tt.msg)
			d := rawGet(t, raw(t, url), queue)
			if d.DeliveryMode != amqp.Persistent {
				t.Errorf("delivery mode = %d, want %d (persistent)", d.DeliveryMode, amqp.Persistent)
			}
			if d.ContentType != "application/json" {
				t.Errorf("content type = %q, want application/json", d.ContentType)
			}
			if d.Exchange != "" || d.RoutingKey != queue {
				t.Errorf("exchange %q routing key %q, want default exchange and %q", d.Exchange, d.RoutingKey, queue)
			}
			if !bytes.Equal(d.Body, tt.msg.Body) {
				t.Errorf("body differs: got %d bytes, want %d", len(d.Body), len(tt.msg.Body))
			}
			if tt.msg.MessageID != "" && d.MessageId != tt.msg.MessageID || d.MessageId == "" {
				t.Errorf("message id = %q, want %q (or generated when empty)", d.MessageId, tt.msg.MessageID)
			}
			for k, v := range tt.msg.Headers {
				if d.Headers[k] != v {
					t.Errorf("header %s = %#v, want %#v", k, d.Headers[k], v)
				}
			}

			// Through Consume.
			got := make(chan mq.Delivery, 1)
			startConsumer(t, c, queue, mq.ConsumeOptions{}, func(ctx context.Context, d mq.Delivery) error {
				logging.From(ctx).Info("handling")
				got <- d
				return nil
			})
			publish(t, c, queue, tt.msg)
			var gd mq.Delivery
			select {
			case gd = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("no delivery within 10s")
			}
			if !bytes.Equal(gd.Body, tt.msg.Body) {
				t.Errorf("consumed body differs: got %d bytes, want %d", len(gd.Body), len(tt.msg.Body))
			}
			if gd.Attempt != 1 || gd.Redeliveries != 0 {
				t.Errorf("attempt %d redeliveries %d, want 1 0", gd.Attempt, gd.Redeliveries)
			}
			if gd.MessageID == "" || tt.msg.MessageID != "" && gd.MessageID != tt.msg.MessageID {
				t.Errorf("consumed message id = %q, want %q", gd.MessageID, tt.msg.MessageID)
			}
			for k, v := range tt.msg.Headers {
				if gd.Headers[k] != v {
					t.Errorf("consumed header %s = %#v, want %#v", k, gd.Headers[k], v)
				}
			}
			testenv.Eventually(t, 5*time.Second, "handler log line with message_id", func() bool {
				return strings.Contains(logs.String(), `"msg":"handling"`) &&
					strings.Contains(logs.String(), `"message_id":"`+gd.MessageID+`"`)
			})
		})
	}
}

func TestPublishDeclaresQueue(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	tests := []struct {
		name string
		args amqp.Table // pre-declared by an operator with these arguments; nil: absent
		pre  bool
	}{
		{name: "absent: created durable", pre: false},
		{name: "pre-declared durable", pre: true},
		// A durable declare without arguments would fail (PRECONDITION_FAILED)
		// on this queue: Publish must accept it as it is.
		{name: "pre-declared with arguments", pre: true, args: amqp.Table{"x-max-length": int32(1000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			queue := testenv.Queue(t, url, "mq_declare")
			rc := raw(t, url)
			if tt.pre {
				if _, err := rawChannel(t, rc).QueueDeclare(queue, true, false, false, false, tt.args); err != nil {
					t.Fatalf("operator declare: %v", err)
				}
			}
			log, _ := testenv.Logger(t)
			c := dial(t, url, log, fastOptions(nil))
			publish(t, c, queue, mq.Message{Body: []byte(`{"n":1}`)})
			publish(t, c, queue, mq.Message{Body: []byte(`{"n":2}`)})
			if n := depth(t, url, queue); n != 2 {
				t.Errorf("queue holds %d messages, want 2", n)
			}
			// Redeclaring with the expected properties fails (and closes the
			// channel) if the queue is not durable or has other arguments.
			if _, err := rawChannel(t, rc).QueueDeclare(queue, true, false, false, false, tt.args); err != nil {
				t.Errorf("queue is not durable with arguments %v: %v", tt.args, err)
			}
		})
	}
}

func TestConsumeOutcomes(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	const maxAttempts = 3
	tests := []struct {
		name      string
		handle    func(ctx context.Context, d mq.Delivery) error
		wantCalls int
		wantDead  string // substring of the dead-lettered message's error header; "" = not dead-lettered
		outcomes  map[string]float64
	}{
		{
			name:      "success acked",
			handle:    func(context.Context, mq.Delivery) error { return nil },
			wantCalls: 1,
			outcomes:  map[string]float64{mq.OutcomeAcked: 1},
		},
		{
			name: "permanent failure acked, not retried",
			handle: func(context.Context, mq.Delivery) error {
				return fmt.Errorf("no audio track: %w", mq.ErrPermanent)
			},
			wantCalls: 1,
			outcomes:  map[string]float64{mq.OutcomeFailed: 1},
		},
		{
			name:      "transient failure retried then dead-lettered",
			handle:    func(context.Context, mq.Delivery) error { return errors.New("disk full") },
			wantCalls: maxAttempts,
			wantDead:  "disk full",
			outcomes:  map[string]float64{mq.OutcomeRetried: maxAttempts - 1, mq.OutcomeDeadLettered: 1},
		},
		{
			name:      "panic treated as transient",
			handle:    func(context.Context, mq.Delivery) error { panic("boom") },
			wantCalls: maxAttempts,
			wantDead:  "boom",
			outcomes:  map[string]float64{mq.OutcomeRetried: maxAttempts - 1, mq.OutcomeDeadLettered: 1},
		},
		{
			name: "transient failure then success",
			handle: func(_ context.Context, d mq.Delivery) error {
				if d.Attempt < 2 {
					return errors.New("mongodb timeout")
				}
				return nil
			},
			wantCalls: 2,
			outcomes:  map[string]float64{mq.OutcomeRetried: 1, mq.OutcomeAcked: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			queue := testenv.Queue(t, url, "mq_outcome")
			dead := mq.DeadLetterQueue(queue)
			log, _ := testenv.Logger(t)
			reg := prometheus.NewRegistry()
			m, err := mq.NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			c := dial(t, url, log, fastOptions(m))

			var (
				mu       sync.Mutex
				attempts []int
				ids      []string
			)
			cs := startConsumer(t, c, queue, mq.ConsumeOptions{
				Concurrency: 2, MaxAttempts: maxAttempts,
				RetryBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
			}, func(ctx context.Context, d mq.Delivery) error {
				mu.Lock()
				attempts = append(attempts, d.Attempt)
				ids = append(ids, d.MessageID)
				mu.Unlock()
				return tt.handle(ctx, d)
			})
			publish(t, c, queue, mq.Message{Body: []byte(`{"video_fid":"x"}`), MessageID: "m1"})
			calls := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(attempts)
			}
			testenv.Eventually(t, 10*time.Second, fmt.Sprintf("%d handler calls", tt.wantCalls), func() bool {
				return calls() >= tt.wantCalls
			})
			if tt.wantDead != "" {
				testenv.Eventually(t, 10*time.Second, "a message in the dead-letter queue", func() bool {
					return depth(t, url, dead) == 1
				})
			}
			if err := cs.stop(t); err != nil {
				t.Errorf("Consume returned %v, want nil after cancel", err)
			}
			// Consume has returned: anything unacked went back to the queue.
			mu.Lock()
			wantAttempts := make([]int, tt.wantCalls)
			for i := range wantAttempts {
				wantAttempts[i] = i + 1
			}
			if !slices.Equal(attempts, wantAttempts) {
				t.Errorf("attempts seen %v, want %v", attempts, wantAttempts)
			}
			for _, id := range ids {
				if id != "m1" {
					t.Errorf("message id %q on a retry, want m1", id)
				}
			}
			mu.Unlock()
			if n := depth(t, url, queue); n != 0 {
				t.Errorf("queue holds %d messages after the consumer stopped, want 0", n)
			}
			for outcome, want := range tt.outcomes {
				got := testenv.Metric(t, reg, "mq_messages_handled_total", map[string]string{"queue": queue, "outcome": outcome})
				if got != want {
					t.Errorf("mq_messages_handled_total{outcome=%q} = %v, want %v", outcome, got, want)
				}
			}
			if tt.wantDead == "" {
				if n := depth(t, url, dead); n != 0 {
					t.Errorf("dead-letter queue holds %d messages, want 0", n)
				}
				return
			}
			d := rawGet(t, raw(t, url), dead)
			if s, _ := d.Headers[mq.HeaderLastError].(string); !strings.Contains(s, tt.wantDead) {
				t.Errorf("%s = %q, want it to contain %q", mq.HeaderLastError, s, tt.wantDead)
			}
			if n, _ := d.Headers[mq.HeaderAttempts].(int32); n != maxAttempts {
				t.Errorf("%s = %#v, want %d", mq.HeaderAttempts, d.Headers[mq.HeaderAttempts], maxAttempts)
			}
			if q, _ := d.Headers[mq.HeaderOriginalQueue].(string); q != queue {
				t.Errorf("%s = %q, want %q", mq.HeaderOriginalQueue, q, queue)
			}
			if string(d.Body) != `{"video_fid":"x"}` || d.MessageId != "m1" || d.DeliveryMode != amqp.Persistent {
				t.Errorf("dead-lettered message body %q id %q mode %d, want the original, persistent", d.Body, d.MessageId, d.DeliveryMode)
			}
		})
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	for _, concurrency := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("concurrency %d", concurrency), func(t *testing.T) {
			t.Parallel()
			queue := testenv.Queue(t, url, "mq_conc")
			log, _ := testenv.Logger(t)
			c := dial(t, url, log, fastOptions(nil))
			const n = 12
			var running, peak, done atomic.Int32
			startConsumer(t, c, queue, mq.ConsumeOptions{Concurrency: concurrency, Prefetch: 10},
				func(context.Context, mq.Delivery) error {
					r := running.Add(1)
					for {
						p := peak.Load()
						if r <= p || peak.CompareAndSwap(p, r) {
							break
						}
					}
					time.Sleep(30 * time.Millisecond) // scenario, not evidence: a handler's work, long enough to overlap
					running.Add(-1)
					done.Add(1)
					return nil
				})
			for i := range n {
				publish(t, c, queue, mq.Message{Body: fmt.Appendf(nil, `{"i":%d}`, i)})
			}
			testenv.Eventually(t, 10*time.Second, fmt.Sprintf("%d messages handled", n), func() bool { return done.Load() == n })
			if p := peak.Load(); p != int32(concurrency) {
				t.Errorf("at most %d handlers ran at once, want %d", p, concurrency)
			}
		})
	}
}

func TestBrokerOutage(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)

	t.Run("publish fails during outage and recovers on the same Conn", func(t *testing.T) {
		t.Parallel()
		queue := testenv.Queue(t, url, "mq_outage_pub")
		purl, proxy := testenv.RabbitMQProxy(t)
		log, _ := testenv.Logger(t)
		c := dial(t, purl, log, fastOptions(nil))
		publish(t, c, queue, mq.Message{Body: []byte(`{"n":1}`)})

		proxy.Down()
		testenv.Eventually(t, 5*time.Second, "Ready reports the outage", func() bool {
			return errors.Is(c.Ready(context.Background()), mq.ErrUnavailable)
		})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		errc := make(chan error, 1)
		go func() { errc <- c.Publish(ctx, queue, mq.Message{Body: []byte(`{"n":"lost"}`)}) }()
		select {
		case err := <-errc:
			if !errors.Is(err, mq.ErrUnavailable) {
				t.Errorf("Publish during outage = %v, want an error wrapping ErrUnavailable", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Publish during the outage did not return within 5s (its ctx allowed 300ms)")
		}

		// A Publish whose ctx outlasts a short outage waits for the broker.
		waiting := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			waiting <- c.Publish(ctx, queue, mq.Message{Body: []byte(`{"n":"waited"}`)})
		}()
		time.Sleep(100 * time.Millisecond) // scenario, not evidence: the broker stays away while Publish waits
		proxy.Up()
		select {
		case err := <-waiting:
			if err != nil {
				t.Errorf("Publish waiting through the outage = %v, want nil", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Publish waiting through the outage did not return")
		}
		testenv.Eventually(t, 10*time.Second, "Publish succeeds after the broker is back", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return c.Publish(ctx, queue, mq.Message{Body: []byte(`{"n":2}`)}) == nil
		})
		if err := c.Ready(context.Background()); err != nil {
			t.Errorf("Ready after recovery: %v", err)
		}
		if n := depth(t, url, queue); n < 3 {
			t.Errorf("queue holds %d messages, want the 3 confirmed ones", n)
		}
	})

	t.Run("consumer resumes after outage", func(t *testing.T) {
		t.Parallel()
		queue := testenv.Queue(t, url, "mq_outage_sub")
		purl, proxy := testenv.RabbitMQProxy(t)
		log, _ := testenv.Logger(t)
		pub := dial(t, url, log, fastOptions(nil)) // the publisher is not behind the proxy
		sub := dial(t, purl, log, fastOptions(nil))
		got := make(chan string, 10)
		startConsumer(t, sub, queue, mq.ConsumeOptions{}, func(_ context.Context, d mq.Delivery) error {
			got <- string(d.Body)
			return nil
		})
		// An ack sent just before the outage may never reach the broker: an
		// earlier message can come again (at least once), a later one not.
		order := []string{`"before"`, `"during"`, `"after"`}
		receive := func(want string) {
			t.Helper()
			deadline := time.After(10 * time.Second)
			for {
				select {
				case b := <-got:
					if b == want {
						return
					}
					if slices.Index(order, b) > slices.Index(order, want) {
						t.Fatalf("received %s before %s", b, want)
					}
				case <-deadline:
					t.Fatalf("%s not received within 10s", want)
				}
			}
		}
		publish(t, pub, queue, mq.Message{Body: []byte(`"before"`)})
		receive(`"before"`)

		proxy.Down()
		testenv.Eventually(t, 5*time.Second, "the consumer's Conn notices the outage", func() bool {
			return sub.Ready(context.Background()) != nil
		})
		publish(t, pub, queue, mq.Message{Body: []byte(`"during"`)})
		proxy.Up()
		receive(`"during"`)
		publish(t, pub, queue, mq.Message{Body: []byte(`"after"`)})
		receive(`"after"`)
	})

	t.Run("dial while the broker is down", func(t *testing.T) {
		t.Parallel()
		queue := testenv.Queue(t, url, "mq_outage_dial")
		purl, proxy := testenv.RabbitMQProxy(t)
		proxy.Down()
		log, _ := testenv.Logger(t)

		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if c, err := mq.DialOptions(ctx, purl, log, fastOptions(nil)); !errors.Is(err, mq.ErrUnavailable) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("Dial with the broker down = %v, want an error wrapping ErrUnavailable", err)
		}

		c, err := mq.New(purl, log, fastOptions(nil))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Ready(context.Background()); !errors.Is(err, mq.ErrUnavailable) {
			t.Errorf("Ready before the broker is up = %v, want ErrUnavailable", err)
		}
		proxy.Up()
		// Publish waits (within its ctx) for the first connection.
		publish(t, c, queue, mq.Message{Body: []byte(`{}`)})
		if err := c.Ready(context.Background()); err != nil {
			t.Errorf("Ready once connected: %v", err)
		}
	})
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)

	t.Run("in-flight handler finishes and its message is acked", func(t *testing.T) {
		t.Parallel()
		queue := testenv.Queue(t, url, "mq_shutdown_finish")
		log, _ := testenv.Logger(t)
		c := dial(t, url, log, fastOptions(nil))
		started, release := make(chan struct{}), make(chan struct{})
		var calls atomic.Int32
		var ctxErr atomic.Value
		cs := startConsumer(t, c, queue, mq.ConsumeOptions{ShutdownTimeout: 10 * time.Second},
			func(ctx context.Context, _ mq.Delivery) error {
				if calls.Add(1) == 1 {
					close(started)
				}
				<-release
				ctxErr.Store(fmt.Sprint(ctx.Err()))
				return nil
			})
		publish(t, c, queue, mq.Message{Body: []byte(`{}`)})
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("handler not started within 10s")
		}
		stopped := make(chan error, 1)
		go func() { stopped <- cs.stop(t) }()
		select {
		case err := <-stopped:
			t.Fatalf("Consume returned (%v) while a handler was still running", err)
		case <-time.After(200 * time.Millisecond):
		}
		close(release)
		if err := <-stopped; err != nil {
			t.Errorf("Consume = %v, want nil", err)
		}
		if s := ctxErr.Load(); s != "<nil>" {
			t.Errorf("handler ctx error at the end = %v, want nil (not cancelled during a graceful shutdown)", s)
		}
		if n := depth(t, url, queue); n != 0 {
			t.Errorf("queue holds %d messages after shutdown, want 0 (acked)", n)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("handler called %d times, want 1", n)
		}
	})

	t.Run("handler outliving the timeout is cancelled and redelivered", func(t *testing.T) {
		t.Parallel()
		queue := testenv.Queue(t, url, "mq_shutdown_timeout")
		log, logs := testenv.Logger(t)
		c := dial(t, url, log, fastOptions(nil))
		started := make(chan struct{})
		var cancelled atomic.Bool
		cs := startConsumer(t, c, queue, mq.ConsumeOptions{ShutdownTimeout: 200 * time.Millisecond},
			func(ctx context.Context, _ mq.Delivery) error {
				close(started)
				<-ctx.Done()
				cancelled.Store(true)
				return ctx.Err()
			})
		publish(t, c, queue, mq.Message{Body: []byte(`{"slow":true}`), MessageID: "slow"})
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("handler not started within 10s")
		}
		if err := cs.stop(t); err != nil {
			t.Errorf("Consume = %v, want nil", err)
		}
		if !cancelled.Load() {
			t.Error("the handler's ctx was not cancelled after ShutdownTimeout")
		}
		if out := logs.String(); strings.Contains(out, "will retry") || strings.Contains(out, "dead-letter") {
			t.Errorf("a requeued message was logged as a failure to retry:\n%s", out)
		}

		// The next consumer gets the message, attempt 1, counted as
		// redelivered once.
		got := make(chan mq.Delivery, 10)
		next := startConsumer(t, dial(t, url, log, fastOptions(nil)), queue, mq.ConsumeOptions{},
			func(_ context.Context, d mq.Delivery) error {
				got <- d
				return nil
			})
		select {
		case d := <-got:
			if d.MessageID != "slow" || d.Attempt != 1 || d.Redeliveries != 1 {
				t.Errorf("next consumer got id %q attempt %d %s %#v, want slow 1 1", d.MessageID, d.Attempt,
					mq.HeaderRedeliveries, d.Headers[mq.HeaderRedeliveries])
			}
		case <-time.After(10 * time.Second):
			t.Fatal("message not redelivered to the next consumer within 10s")
		}
		if err := next.stop(t); err != nil {
			t.Errorf("Consume = %v", err)
		}
		if n := len(got); n != 0 {
			t.Errorf("next consumer got %d more deliveries, want the message once", n)
		}
		if n := depth(t, url, queue); n != 0 {
			t.Errorf("queue holds %d messages, want 0", n)
		}
	})
}

func TestCompetingConsumers(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	queue := testenv.Queue(t, url, "mq_compete")
	log, _ := testenv.Logger(t)
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		per  [2]int
	)
	var consumers []*consumer
	for i := range 2 {
		c := dial(t, url, log, fastOptions(nil))
		consumers = append(consumers, startConsumer(t, c, queue, mq.ConsumeOptions{Concurrency: 2},
			func(_ context.Context, d mq.Delivery) error {
				mu.Lock()
				seen[d.MessageID]++
				per[i]++
				mu.Unlock()
				time.Sleep(2 * time.Millisecond) // scenario, not evidence: a handler's work, so that both consumers get some
				return nil
			}))
	}
	// Both consumers must be registered before publishing, so that both get work.
	ch := rawChannel(t, raw(t, url))
	testenv.Eventually(t, 10*time.Second, "2 consumers on the queue", func() bool {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		return err == nil && q.Consumers == 2
	})
	pub := dial(t, url, log, fastOptions(nil))
	const n = 40
	for i := range n {
		publish(t, pub, queue, mq.Message{Body: []byte(`{}`), MessageID: fmt.Sprintf("m%02d", i)})
	}
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("%d messages handled", n), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	})
	for _, cs := range consumers {
		if err := cs.stop(t); err != nil {
			t.Errorf("Consume = %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, k := range seen {
		if k != 1 {
			t.Errorf("message %s handled %d times, want once", id, k)
		}
	}
	if per[0] == 0 || per[1] == 0 {
		t.Errorf("work split %v: one consumer got nothing", per)
	}
	if d := depth(t, url, queue); d != 0 {
		t.Errorf("queue holds %d messages, want 0", d)
	}
}

func TestClosedConn(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	queue := testenv.Queue(t, url, "mq_closed")
	log, _ := testenv.Logger(t)
	c := dial(t, url, log, fastOptions(nil))
	cs := startConsumer(t, c, queue, mq.ConsumeOptions{}, func(context.Context, mq.Delivery) error { return nil })
	testenv.Eventually(t, 10*time.Second, "queue declared by the consumer", func() bool {
		_, ok := testenv.QueueDepth(t, url, queue)
		return ok
	})
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	select {
	case <-cs.done:
		if !errors.Is(cs.err, mq.ErrClosed) {
			t.Errorf("Consume after Close = %v, want ErrClosed", cs.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return within 10s of Close")
	}
	if err := c.Publish(context.Background(), queue, mq.Message{Body: []byte(`{}`)}); !errors.Is(err, mq.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := c.Ready(context.Background()); err == nil {
		t.Error("Ready after Close = nil, want an error")
	}
}

// A message whose consumer dies on it every time (here: its connection is
// cut mid-handling) is handled MaxRedeliveries+1 times at most, then
// dead-lettered, and OnRedeliveryLimit is told. Also on a slow link, where
// an ack the consumer has sent is still on its way when it "crashes" unless
// the test waits for it.
func TestRedeliveryLimit(t *testing.T) {
	t.Parallel()
	url := testenv.RabbitMQ(t)
	for _, link := range []struct {
		name  string
		delay time.Duration // added to what the consumer sends the broker
	}{
		{"direct", 0},
		{"slow link", 50 * time.Millisecond},
	} {
		t.Run(link.name, func(t *testing.T) {
			t.Parallel()
			queue := testenv.Queue(t, url, "mq_poison")
			purl, proxy := testenv.RabbitMQProxy(t)
			if link.delay > 0 {
				purl = slowLink(t, purl, link.delay)
			}
			log, _ := testenv.Logger(t)
			reg := prometheus.NewRegistry()
			m, err := mq.NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			pub := dial(t, url, log, fastOptions(nil))
			sub := dial(t, purl, log, fastOptions(m))
			started := make(chan mq.Delivery, 10)
			returned := make(chan error, 10)
			told := make(chan string, 10)
			const limit = 2
			startConsumer(t, sub, queue, mq.ConsumeOptions{Concurrency: 4, MaxRedeliveries: limit,
				// A failed test stops the consumer with handlers still waiting.
				ShutdownTimeout: time.Second,
				OnRedeliveryLimit: func(ctx context.Context, d mq.Delivery, reason string) {
					if _, ok := ctx.Deadline(); !ok || d.MessageID != "poison" {
						t.Errorf("OnRedeliveryLimit: deadline %v, message %q", ok, d.MessageID)
					}
					told <- reason
				}},
				func(ctx context.Context, d mq.Delivery) error {
					started <- d
					// Its connection dying cancels it (the delivery can
					// no longer be acked).
					<-ctx.Done()
					returned <- ctx.Err()
					return ctx.Err()
				})
			publish(t, pub, queue, mq.Message{Body: []byte(`{"poison":true}`), MessageID: "poison"})
			for i := range limit + 1 {
				select {
				case d := <-started:
					if got := d.Headers[mq.HeaderRedeliveries]; (i == 0 && got != nil) || (i > 0 && got != int32(i)) {
						t.Fatalf("handling %d: %s = %#v, want %d", i+1, mq.HeaderRedeliveries, got, i)
					}
				case <-time.After(15 * time.Second):
					t.Fatalf("handling %d did not start within 15s", i+1)
				}
				// The copy can be handled before the broker confirmed it; the
				// crash comes once the original is settled, or it comes back
				// too (at least once) with the count it had.
				testenv.Eventually(t, 10*time.Second, "the redelivery counted", func() bool {
					return testenv.Metric(t, reg, "mq_messages_handled_total", map[string]string{"queue": queue, "outcome": mq.OutcomeRecounted}) == float64(i)
				})
				// The counted ack was sent, but an ack has no reply: it may still
				// be in a socket buffer or the proxy. A round trip on the same
				// connection, sent after it, returns once the broker has read it.
				if err := sub.RoundTrip(context.Background(), queue); err != nil {
					t.Fatalf("round trip through the consumer's connection: %v", err)
				}
				proxy.Down() // the consumer "crashes": its connection dies, nothing is settled
				testenv.Eventually(t, 5*time.Second, "the consumer's Conn notices the outage", func() bool {
					return sub.Ready(context.Background()) != nil
				})
				select {
				case <-returned:
				case <-time.After(5 * time.Second):
					t.Fatalf("handling %d: the handler was not cancelled within 5s of its connection dying", i+1)
				}
				proxy.Up()
			}
			select {
			case reason := <-told:
				if !strings.Contains(reason, "redelivered 3 times") {
					t.Errorf("reason %q", reason)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("OnRedeliveryLimit not called within 15s")
			}
			dead := mq.DeadLetterQueue(queue)
			testenv.Eventually(t, 10*time.Second, "the message in the dead-letter queue", func() bool {
				return depth(t, url, dead) == 1
			})
			d := rawGet(t, raw(t, url), dead)
			if d.MessageId != "poison" || d.Headers[mq.HeaderRedeliveries] != int32(limit+1) || d.Headers[mq.HeaderOriginalQueue] != queue {
				t.Errorf("dead-lettered: id %q headers %v", d.MessageId, d.Headers)
			}
			select {
			case <-started:
				t.Error("handled again after the redelivery limit")
			case <-time.After(500 * time.Millisecond):
			}
			if n := depth(t, url, queue); n != 0 {
				t.Errorf("queue holds %d messages, want 0", n)
			}
		})
	}
}
