package mq

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"mp3converter/internal/logging"
)

// settle acks, retries, defers or dead-letters f once its handler returned
// err (see Consume), unless f was claimed already or can no longer be
// settled.
func (cs *consumer) settle(f *inflight, err error) {
	switch {
	case f.claimed.Load():
		// The shutdown timed out, cancelled the handler and requeued the
		// message already: its error is that cancellation, not a failure.
		f.log.Debug("handler returned after its message was requeued", "err", err)
	case f.alive.Err() != nil:
		// Its channel closed: the broker has requeued the message, and a
		// copy (a retry) would be a duplicate of the redelivery.
		if f.claim() {
			f.log.Warn("the message's channel closed while it was handled: handler cancelled, the broker redelivers it",
				"err", err)
			cs.m.onHandled(cs.queue, OutcomeLost)
		}
	case err == nil:
		if f.claim() {
			cs.ack(f, OutcomeAcked)
			f.log.Debug("message handled")
		}
	case errors.Is(err, ErrPermanent):
		if f.claim() {
			f.log.Warn("message failed permanently, not retrying", "err", err)
			cs.ack(f, OutcomeFailed)
		}
	case errors.Is(err, ErrDeferred) && f.deferrals < cs.opt.MaxDeferrals:
		cs.deferral(f, err)
	default:
		cs.retry(f, err)
	}
}

// requeue nacks d back to its queue, for the broker to deliver again.
func (cs *consumer) requeue(d amqp.Delivery) {
	if err := d.Nack(false, true); err != nil {
		cs.log.Warn("nack failed; the broker requeues the message when the channel closes",
			"message_id", d.MessageId, "err", err)
	}
	cs.m.onHandled(cs.queue, OutcomeRequeued)
}

// retry republishes f for its next attempt after a backoff, or dead-letters
// it when the attempts are used up; the original is acked only once the
// copy is confirmed.
func (cs *consumer) retry(f *inflight, herr error) {
	if f.last {
		f.log.Error("message failed on its last attempt, dead-lettering", "err", herr,
			"max_attempts", cs.opt.MaxAttempts, "dead_letter_queue", cs.dead)
	} else {
		delay := retryDelay(cs.opt.RetryBackoff, cs.opt.MaxBackoff, f.attempt)
		f.log.Warn("message failed, will retry", "err", herr, "retry_in", delay.String())
		cs.wait(f, delay)
	}
	if !f.claim() {
		return
	}
	headers := amqp.Table{HeaderLastError: logging.Clip(herr.Error(), maxErrorHeader)}
	to, outcome := cs.queue, OutcomeRetried
	if f.last {
		to, outcome = cs.dead, OutcomeDeadLettered
		cs.deadHeaders(headers, f)
	} else {
		headers[HeaderAttempts] = int32(f.attempt + 1)
	}
	cs.republish(f, to, headers, outcome)
}

// deferral republishes f after a backoff with its deferral count
// incremented and its attempt count as it was.
func (cs *consumer) deferral(f *inflight, herr error) {
	n := f.deferrals + 1
	delay := retryDelay(cs.opt.RetryBackoff, cs.opt.MaxBackoff, n)
	f.log.Info("message deferred, will try again", "reason", herr, "deferrals", n,
		"max_deferrals", cs.opt.MaxDeferrals, "retry_in", delay.String())
	cs.wait(f, delay)
	if !f.claim() {
		return
	}
	cs.republish(f, cs.queue, amqp.Table{HeaderDeferrals: int32(n)}, OutcomeDeferred)
}

// wait holds f for delay before its copy is published, less when the
// consumer stops or f's channel closes (then the copy is published at
// once, or not at all).
func (cs *consumer) wait(f *inflight, delay time.Duration) {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-cs.stopping: // shutting down: republish now rather than hold the message
	case <-f.alive.Done(): // channel lost (the broker requeued it) or shutdown timed out (it requeues it)
	}
}

// recount handles a redelivered message (see Consume): republished with
// its redelivery count, or dead-lettered beyond MaxRedeliveries.
func (cs *consumer) recount(f *inflight) {
	if !f.claim() {
		return
	}
	n := headerCount(f.d.Headers[HeaderRedeliveries]) + 1
	headers := amqp.Table{HeaderRedeliveries: int32(n)}
	if n <= cs.opt.MaxRedeliveries {
		f.log.Info("redelivered message: counted, handled again from the queue", "redeliveries", n)
		cs.republish(f, cs.queue, headers, OutcomeRecounted)
		return
	}
	reason := fmt.Sprintf("redelivered %d times without being settled: a consumer may crash on it", n)
	f.log.Error("message over the redelivery limit, dead-lettering", "redeliveries", n,
		"max_redeliveries", cs.opt.MaxRedeliveries, "dead_letter_queue", cs.dead)
	headers[HeaderLastError] = reason
	cs.deadHeaders(headers, f)
	if !cs.republish(f, cs.dead, headers, OutcomeDeadLettered) || cs.opt.OnRedeliveryLimit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(logging.Into(context.WithoutCancel(cs.work), f.log), 15*time.Second)
	defer cancel()
	func() {
		defer func() {
			if p := recover(); p != nil {
				f.log.Error("panic in OnRedeliveryLimit", "panic", fmt.Sprint(p))
			}
		}()
		cs.opt.OnRedeliveryLimit(ctx, f.delivery(), reason)
	}()
}

// republish publishes a copy of f's message to queue to, with headers
// added, and acks the original once the broker confirmed the copy (then
// counts outcome). If the copy is not confirmed the original is nacked
// back to the queue. It reports whether the copy was published.
func (cs *consumer) republish(f *inflight, to string, headers amqp.Table, outcome string) bool {
	if f.ch.IsClosed() {
		// The broker already requeued the original when its channel died;
		// a copy would be a duplicate.
		f.log.Warn("channel lost before the copy was published; the broker redelivers the message")
		return false
	}
	p := amqp.Publishing{
		Headers:         maps.Clone(f.d.Headers),
		ContentType:     f.d.ContentType,
		ContentEncoding: f.d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		Priority:        f.d.Priority,
		CorrelationId:   f.d.CorrelationId,
		ReplyTo:         f.d.ReplyTo,
		MessageId:       f.id,
		Timestamp:       f.d.Timestamp,
		Type:            f.d.Type,
		AppId:           f.d.AppId,
		Body:            f.d.Body,
	}
	if p.Headers == nil {
		p.Headers = amqp.Table{}
	}
	maps.Copy(p.Headers, headers)
	ctx, cancel := context.WithTimeout(cs.work, cs.c.opt.PublishTimeout)
	defer cancel()
	if err := cs.c.publish(ctx, to, p, false); err != nil {
		f.log.Error("could not republish the message, requeueing it", "to", to, "err", err)
		if err := f.d.Nack(false, true); err != nil {
			f.log.Warn("nack failed; the broker requeues the message when the channel closes", "err", err)
		}
		cs.m.onHandled(cs.queue, OutcomeRequeued)
		return false
	}
	cs.ack(f, outcome)
	return true
}

func (cs *consumer) ack(f *inflight, outcome string) {
	if err := f.d.Ack(false); err != nil {
		f.log.Warn("ack failed; the broker will redeliver the message", "err", err)
		return
	}
	cs.m.onHandled(cs.queue, outcome)
}

// retryDelay is base·2^(attempt-1), capped at limit.
func retryDelay(base, limit time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt; i++ {
		if d >= limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}
