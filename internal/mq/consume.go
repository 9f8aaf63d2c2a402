package mq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"mp3converter/internal/logging"
)

// Handler processes one delivery. nil means done (ack); an error wrapping
// ErrPermanent means "failed, don't retry" (ack); one wrapping ErrDeferred
// means "not now, somebody else is at it" (republished after a backoff, no
// attempt counted, up to ConsumeOptions.MaxDeferrals); any other error is
// transient (retry later, dead-letter after ConsumeOptions.MaxAttempts).
//
// ctx carries a logger with the message ID (logging.From(ctx)). It is
// cancelled as soon as the delivery can no longer be acked: its channel
// or connection closed (the broker lost us, or took the message back
// because it stayed unacked longer than its consumer_timeout), so the
// broker has requeued the message and will hand it to a consumer again,
// and whatever the handler still does is wasted and races with that next
// consumer. Such a handling is not retried (the redelivery is the retry).
// ctx is also cancelled when a shutdown outlasts
// ConsumeOptions.ShutdownTimeout. A handler must stop promptly once ctx is
// done.
type Handler func(ctx context.Context, d Delivery) error

// Delivery is one message handed to a Handler.
type Delivery struct {
	Body      []byte
	MessageID string // from the publisher, or generated when it set none
	// Attempt is 1 on the first delivery and grows with each retry (it is
	// the HeaderAttempts header). A redelivery by the broker after a crash or
	// a connection loss does not count as an attempt.
	Attempt int
	// LastAttempt is whether Attempt is the last of
	// ConsumeOptions.MaxAttempts: a transient error from this handling
	// dead-letters the message rather than retrying it (unless the
	// handling is cut short by its channel closing or a shutdown: then the
	// message is handled again).
	LastAttempt bool
	// Redeliveries is how often the broker handed it back unsettled (a
	// consumer died on it, lost its connection or stopped): the
	// HeaderRedeliveries header.
	Redeliveries int
	// Deferrals is how often a handler deferred it (ErrDeferred): the
	// HeaderDeferrals header.
	Deferrals int
	Headers   map[string]any
}

// ConsumeOptions tune Consume. Zero values take the defaults in brackets.
type ConsumeOptions struct {
	// Concurrency is how many handlers run at once [1].
	Concurrency int
	// Prefetch is how many unacked deliveries the broker sends ahead
	// [Concurrency]. Below Concurrency it caps concurrency; above, the extra
	// messages wait in this consumer while other consumers could take them.
	Prefetch int
	// MaxAttempts is how many times a message is tried before it goes to
	// the dead-letter queue <queue>.dead [5].
	MaxAttempts int
	// RetryBackoff is the delay before the first retry; it doubles with
	// each attempt up to MaxBackoff [1s, 30s].
	RetryBackoff, MaxBackoff time.Duration
	// ShutdownTimeout is how long in-flight handlers may run on after ctx
	// is cancelled; then their ctx is cancelled and their messages are
	// requeued [25s].
	ShutdownTimeout time.Duration
	// MaxRedeliveries bounds how often a message may come back unsettled
	// (a consumer died on it, lost its connection, or handed it back at
	// shutdown) before it goes to the dead-letter queue instead of being
	// handled again: a message that crashes every consumer does not crash
	// them for ever [10].
	MaxRedeliveries int
	// MaxDeferrals bounds how often a message may be deferred (the
	// handler's error wraps ErrDeferred) without the deferral counting as a
	// failed attempt [100].
	MaxDeferrals int
	// OnRedeliveryLimit, if set, is called (best effort) for a message
	// dead-lettered because of MaxRedeliveries, to tell whoever waits for
	// it; its ctx has a deadline.
	OnRedeliveryLimit func(ctx context.Context, d Delivery, reason string)
	// Log is the consumer's logger [the Conn's].
	Log *slog.Logger
}

const killGrace = time.Second // wait for handlers to return after their ctx was cancelled

// WithDefaults is o with the defaults in brackets where a field is zero
// (Log stays as it is).
func (o ConsumeOptions) WithDefaults() ConsumeOptions {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Prefetch <= 0 {
		o.Prefetch = o.Concurrency
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 25 * time.Second
	}
	if o.MaxRedeliveries <= 0 {
		o.MaxRedeliveries = 10
	}
	if o.MaxDeferrals <= 0 {
		o.MaxDeferrals = 100
	}
	return o
}

// Consume runs a competing consumer on queue until ctx is cancelled: any
// number of consumers (in this or other processes) share the queue and each
// message goes to one of them. Acks are manual, at most opt.Prefetch
// deliveries are unacked and opt.Concurrency handlers run at once.
//
// After a handler's transient error the message is republished (confirmed)
// to queue with HeaderAttempts incremented, after a backoff, and only then is
// the original acked; after opt.MaxAttempts attempts it is published
// (confirmed) to DeadLetterQueue(queue) with HeaderLastError, HeaderAttempts
// and HeaderOriginalQueue, then acked. If that publish fails, the original
// is nacked with requeue: nothing is lost, nothing loops forever. A
// panicking handler counts as a transient error.
//
// A handler's error wrapping ErrDeferred republishes the message after a
// backoff (RetryBackoff doubling up to MaxBackoff, by the number of
// deferrals) with HeaderDeferrals incremented and HeaderAttempts unchanged;
// beyond opt.MaxDeferrals it is handled like a transient error.
//
// A handler whose delivery's channel or connection closes has its ctx
// cancelled (see Handler); the broker redelivers the message.
//
// A delivery the broker marks redelivered (a consumer took it and never
// settled it) is not handled at once: it is republished (confirmed) with
// HeaderRedeliveries incremented and the original acked, so that the count
// survives the next crash; beyond opt.MaxRedeliveries it goes to the
// dead-letter queue instead and opt.OnRedeliveryLimit is told.
//
// Consume declares queue and its dead-letter queue like Publish does, and
// resumes on the Conn's next connection after the broker went away (the
// Conn redials; Consume does not). When ctx is
// cancelled it stops taking deliveries, lets in-flight handlers finish for
// up to opt.ShutdownTimeout (then cancels their ctx and requeues their
// messages) and returns nil. It returns ErrClosed if the Conn is closed.
func (c *Conn) Consume(ctx context.Context, queue string, opt ConsumeOptions, h Handler) error {
	if queue == "" {
		return errors.New("consume: empty queue name")
	}
	if h == nil {
		return errors.New("consume: nil handler")
	}
	opt = opt.WithDefaults()
	if opt.Log == nil {
		opt.Log = c.log
	}
	work, kill := context.WithCancel(context.WithoutCancel(ctx))
	defer kill()
	cs := &consumer{
		c: c, queue: queue, dead: DeadLetterQueue(queue), opt: opt, h: h, m: c.m,
		log:      opt.Log.With("queue", queue),
		stopping: ctx.Done(),
		work:     work,
		sem:      make(chan struct{}, opt.Concurrency),
		inflight: map[*inflight]struct{}{},
	}
	backoff := c.opt.MinBackoff
	for {
		began := time.Now()
		s, ch, err := cs.serve(ctx)
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			cs.shutdown(ch, kill)
			if errors.Is(err, ErrClosed) && ctx.Err() == nil {
				return fmt.Errorf("consume %s: %w", queue, err)
			}
			cs.log.Info("consumer stopped")
			return nil
		}
		if s != nil && s.conn.IsClosed() {
			// The Conn redials (the one reconnect loop, with its backoff);
			// serve waits for its next connection.
			cs.log.Warn("consumer's connection lost, resuming on the next one", "err", err)
			continue
		}
		// The channel failed on a live connection (the broker cancelled the
		// consumer or refused a declare): try again on that connection,
		// after a backoff so that a lasting refusal does not spin.
		if time.Since(began) > c.opt.MaxBackoff {
			backoff = c.opt.MinBackoff
		}
		cs.log.Warn("consumer interrupted, resuming", "err", err, "retry_in", backoff.String())
		if !sleep(ctx, backoff) {
			cs.shutdown(nil, kill)
			cs.log.Info("consumer stopped")
			return nil
		}
		backoff = min(backoff*2, c.opt.MaxBackoff)
	}
}

type consumer struct {
	c           *Conn
	queue, dead string
	opt         ConsumeOptions
	h           Handler
	m           *Metrics
	log         *slog.Logger

	stopping <-chan struct{} // Consume's ctx is done: take nothing more, skip retry delays
	work     context.Context // parent of the handlers' contexts, cancelled after ShutdownTimeout
	sem      chan struct{}   // one token per running handler
	wg       sync.WaitGroup  // handler goroutines (including their retry publish)
	mu       sync.Mutex      // guards inflight
	inflight map[*inflight]struct{}
}

// inflight is a delivery being handled. Whoever claims it first (the
// handler's goroutine, or shutdown after the timeout) acks or nacks it.
type inflight struct {
	d  amqp.Delivery
	ch *amqp.Channel
	// alive is done once ch is closed (the delivery can no longer be
	// settled) or the shutdown timed out: the parent of the handler's ctx.
	alive     context.Context
	id        string
	attempt   int
	last      bool // attempt is the last of MaxAttempts
	deferrals int
	log       *slog.Logger
	claimed   atomic.Bool
}

func (f *inflight) claim() bool { return f.claimed.CompareAndSwap(false, true) }

// serve consumes on one channel of the Conn's connection (waiting for
// one) until ctx is done (then it stops the consumer, requeues undelivered
// prefetched messages and returns the channel, still open for the in-flight
// acks) or the channel or connection dies (then it returns why). It returns
// the connection's session unless it got none.
func (cs *consumer) serve(ctx context.Context) (*session, *amqp.Channel, error) {
	s, err := cs.c.session(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := s.declare(cs.queue); err != nil {
		return s, nil, err
	}
	if err := s.declare(cs.dead); err != nil {
		return s, nil, err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return s, nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(cs.opt.Prefetch, 0, false); err != nil {
		ch.Close()
		return s, nil, fmt.Errorf("set prefetch: %w", err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	// The deliveries of ch can be settled only while ch is open: once it
	// closes (whoever closes it, the broker or a dead connection), the
	// broker requeues them and their handlers are cancelled.
	alive, lost := context.WithCancel(cs.work)
	gone := ch.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		<-gone
		lost()
	}()
	tag := cs.queue + "-" + logging.NewID()
	deliveries, err := ch.Consume(cs.queue, tag, false, false, false, false, nil)
	if err != nil {
		ch.Close()
		return s, nil, fmt.Errorf("consume: %w", err)
	}
	cs.log.Info("consuming", "consumer_tag", tag, "prefetch", cs.opt.Prefetch,
		"concurrency", cs.opt.Concurrency, "max_attempts", cs.opt.MaxAttempts)
	for {
		select {
		case <-ctx.Done():
			cs.stopTaking(ch, tag, deliveries)
			return s, ch, nil
		case d, ok := <-deliveries:
			if !ok {
				var reason error = errors.New("delivery channel closed (consumer cancelled by the broker?)")
				select {
				case e, ok := <-closed:
					if ok && e != nil {
						reason = e
					}
				default:
				}
				if !ch.IsClosed() {
					_ = ch.Close()
				}
				return s, nil, reason
			}
			select {
			case cs.sem <- struct{}{}:
			case <-ctx.Done():
				cs.requeue(d)
				cs.stopTaking(ch, tag, deliveries)
				return s, ch, nil
			}
			cs.start(ch, alive, d)
		}
	}
}

// stopTaking cancels the consumer and requeues what the broker had already
// sent ahead.
func (cs *consumer) stopTaking(ch *amqp.Channel, tag string, deliveries <-chan amqp.Delivery) {
	if err := ch.Cancel(tag, false); err != nil {
		// The channel is unusable: closing it returns its unacked messages.
		_ = ch.Close()
	}
	for d := range deliveries {
		cs.requeue(d)
	}
}

func (cs *consumer) start(ch *amqp.Channel, alive context.Context, d amqp.Delivery) {
	id := d.MessageId
	if id == "" {
		id = logging.NewID()
	}
	attempt := attempts(d.Headers)
	f := &inflight{d: d, ch: ch, alive: alive, id: id, attempt: attempt,
		last:      attempt >= cs.opt.MaxAttempts,
		deferrals: headerCount(d.Headers[HeaderDeferrals]),
		log:       cs.log.With("message_id", id, "attempt", attempt)}
	cs.mu.Lock()
	cs.inflight[f] = struct{}{}
	cs.mu.Unlock()
	cs.wg.Add(1)
	go cs.handle(f)
}

func (cs *consumer) handle(f *inflight) {
	defer cs.wg.Done()
	defer func() {
		cs.mu.Lock()
		delete(cs.inflight, f)
		cs.mu.Unlock()
	}()
	if f.d.Redelivered {
		cs.recount(f)
		<-cs.sem
		return
	}
	ctx, cancel := context.WithCancel(f.alive)
	defer cancel()
	ctx = logging.Into(ctx, f.log)

	cs.m.onStart(cs.queue)
	err := cs.call(ctx, f)
	cs.m.onFinish(cs.queue)
	<-cs.sem

	cs.settle(f, err)
}

func (cs *consumer) call(ctx context.Context, f *inflight) (err error) {
	defer func() {
		if p := recover(); p != nil {
			f.log.Error("panic in message handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("panic in handler: %v", p)
		}
	}()
	return cs.h(ctx, f.delivery())
}

func (f *inflight) delivery() Delivery {
	return Delivery{
		Body:         f.d.Body,
		MessageID:    f.id,
		Attempt:      f.attempt,
		LastAttempt:  f.last,
		Redeliveries: headerCount(f.d.Headers[HeaderRedeliveries]),
		Deferrals:    f.deferrals,
		Headers:      maps.Clone(map[string]any(f.d.Headers)),
	}
}

// shutdown waits for the in-flight handlers up to ShutdownTimeout, then
// cancels them and requeues their messages; last it closes ch.
func (cs *consumer) shutdown(ch *amqp.Channel, kill context.CancelFunc) {
	done := make(chan struct{})
	go func() {
		cs.wg.Wait()
		close(done)
	}()
	if n := cs.count(); n > 0 {
		cs.log.Info("waiting for in-flight messages", "in_flight", n, "timeout", cs.opt.ShutdownTimeout.String())
	}
	t := time.NewTimer(cs.opt.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		// Claim before cancelling, so that a handler returning because of
		// the cancellation does not retry its message as a failure.
		cs.mu.Lock()
		var late []*inflight
		for f := range cs.inflight {
			if f.claim() {
				late = append(late, f)
			}
		}
		cs.mu.Unlock()
		kill()
		for _, f := range late {
			f.log.Warn("handler still running at shutdown timeout: cancelled, message requeued")
			cs.requeue(f.d)
		}
		select {
		case <-done:
		case <-time.After(killGrace):
			cs.log.Warn("handlers ignore their cancelled context; leaving them behind", "in_flight", cs.count())
		}
	}
	if ch != nil && !ch.IsClosed() {
		_ = ch.Close()
	}
}

func (cs *consumer) count() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.inflight)
}
