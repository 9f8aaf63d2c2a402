package lease

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// KeepOptions say what Keep reports. The zero value reports nothing and
// cancels with an error wrapping ErrLost.
type KeepOptions struct {
	// Lost, if set, returns the cause the context is cancelled with, given
	// the error that ended the lease: renew's error wrapping ErrLost when
	// the lease was taken or released, otherwise renew's failure that left
	// less than an interval before the lease expires. Unset: that error,
	// wrapped in ErrLost when it does not wrap it.
	Lost func(err error) error
	// Retry, if set, is told of each renewal that failed and will be tried
	// again, with when the lease expires as last renewed.
	Retry func(err error, until time.Time)
}

// Keep renews a lease, in force until until, every third of ttl by calling
// renew (Store.Renew, or what wraps it: its error must wrap ErrLost when
// the lease is no longer the caller's), each call bounded by an interval,
// until stop is called. The returned ctx, under ctx, is cancelled with a
// cause (see KeepOptions.Lost) once the lease is lost, or once a renewal
// fails with less than an interval left before it expires: work done under
// a lease must stop before another holder can take it. stop cancels ctx
// (cause context.Canceled) and waits for the renewals to end.
func Keep(ctx context.Context, ttl time.Duration, until time.Time, renew func(context.Context) error, opt KeepOptions) (kctx context.Context, stop func()) {
	kctx, lose := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		every := max(ttl/3, time.Millisecond)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-kctx.Done():
				return
			case <-t.C:
			}
			at := time.Now()
			rctx, cancel := context.WithTimeout(kctx, every)
			err := renew(rctx)
			cancel()
			switch {
			case err == nil:
				until = at.Add(ttl)
			case kctx.Err() != nil:
				return
			case errors.Is(err, ErrLost), time.Until(until) < every:
				lose(lostCause(err, opt.Lost))
				return
			case opt.Retry != nil:
				opt.Retry(err, until)
			}
		}
	}()
	return kctx, func() {
		lose(context.Canceled)
		<-done
	}
}

// lostCause is the cause of a kept lease's context cancelled by err.
func lostCause(err error, lost func(error) error) error {
	switch {
	case lost != nil:
		return lost(err)
	case errors.Is(err, ErrLost):
		return err
	default:
		return fmt.Errorf("%w: not renewed before it expires: %w", ErrLost, err)
	}
}
