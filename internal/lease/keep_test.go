package lease

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// A kept lease outlives its ttl; once another holder takes it (it was
// released, or expired, under the keeper's feet) the keeper's context ends
// with the cause Lost makes of ErrLost, within about an interval.
func TestKeepRenewsUntilLost(t *testing.T) {
	t.Parallel()
	s, _, ctx := newStore(t, Options{})
	id := bson.NewObjectID().Hex()
	const ttl = 900 * time.Millisecond
	l, err := s.Take(ctx, id, Holder{Owner: "a"}, ttl, TakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errTaken := errors.New("taken")
	var lostWith error
	kctx, stop := Keep(ctx, ttl, l.Until, func(ctx context.Context) error { return s.Renew(ctx, id, "a", ttl) },
		KeepOptions{Lost: func(err error) error { lostWith = err; return errTaken }})
	defer stop()

	time.Sleep(ttl + ttl/2) // scenario, not evidence: longer than the ttl, which only renewal outlives
	if err := kctx.Err(); err != nil {
		t.Fatalf("kept lease's context ended: %v (%v)", err, context.Cause(kctx))
	}
	if got, err := s.Get(ctx, id); err != nil || !got.Until.After(time.Now()) || got.Owner != "a" {
		t.Fatalf("kept lease: %+v, %v; want a's, in force", got, err)
	}
	if _, err := s.Take(ctx, id, Holder{Owner: "b"}, ttl, TakeOptions{}); !errors.Is(err, ErrHeld) {
		t.Fatalf("take a kept lease: %v, want ErrHeld", err)
	}

	if err := s.Release(ctx, id, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Take(ctx, id, Holder{Owner: "b"}, time.Minute, TakeOptions{}); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	select {
	case <-kctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the keeper's context did not end after its lease was taken")
	}
	if took := time.Since(lost); took > ttl {
		t.Errorf("the keeper noticed %s after the lease was taken, want within an interval (%s)", took, ttl/3)
	}
	if cause := context.Cause(kctx); cause != errTaken {
		t.Errorf("cause %v, want Lost's", cause)
	}
	stop() // the renewals have ended: lostWith is safe to read
	if !errors.Is(lostWith, ErrLost) {
		t.Errorf("Lost was given %v, want ErrLost", lostWith)
	}
	if got, err := s.Get(ctx, id); err != nil || got.Owner != "b" {
		t.Errorf("after the keeper lost: %+v, %v; want b's lease untouched", got, err)
	}
}

// Renewals that keep failing are retried while more than an interval is
// left, then the context ends (cause: ErrLost and the failure) before the
// lease expires.
func TestKeepGivesUpBeforeExpiry(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second // an interval of 1 s: the first failure is retried, the second is not
	errDown := errors.New("server down")
	var calls, retries atomic.Int32
	until := time.Now().Add(ttl)
	kctx, stop := Keep(context.Background(), ttl, until, func(context.Context) error { calls.Add(1); return errDown },
		KeepOptions{Retry: func(err error, u time.Time) {
			if !errors.Is(err, errDown) || !u.Equal(until) {
				t.Errorf("retry told %v, %s; want the failure and %s", err, u, until)
			}
			retries.Add(1)
		}})
	defer stop()
	select {
	case <-kctx.Done():
	case <-time.After(2 * ttl):
		t.Fatal("the context did not end while renewals failed")
	}
	if ended := time.Now(); !ended.Before(until) {
		t.Errorf("the context ended at %s, after the lease expired (%s)", ended, until)
	}
	if cause := context.Cause(kctx); !errors.Is(cause, ErrLost) || !errors.Is(cause, errDown) {
		t.Errorf("cause %v, want ErrLost and the failure", cause)
	}
	if r, c := retries.Load(), calls.Load(); r < 1 || c != r+1 {
		t.Errorf("%d renewals, %d retried; want the last alone not retried", c, r)
	}
}

// stop ends the context with context.Canceled and returns once no renewal
// runs, and none follows.
func TestKeepStopWaits(t *testing.T) {
	t.Parallel()
	const ttl = 150 * time.Millisecond
	var running, calls atomic.Int32
	renew := func(context.Context) error {
		running.Add(1)
		defer running.Add(-1)
		calls.Add(1)
		time.Sleep(20 * time.Millisecond)
		return nil
	}
	kctx, stop := Keep(context.Background(), ttl, time.Now().Add(ttl), renew, KeepOptions{})
	for calls.Load() < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if n := running.Load(); n != 0 {
		t.Errorf("%d renewals running after stop", n)
	}
	if cause := context.Cause(kctx); !errors.Is(cause, context.Canceled) {
		t.Errorf("cause %v, want context.Canceled", cause)
	}
	n := calls.Load()
	time.Sleep(3 * ttl / 3)
	if m := calls.Load(); m != n {
		t.Errorf("%d renewals after stop", m-n)
	}
}
