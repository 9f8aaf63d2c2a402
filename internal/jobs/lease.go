package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/lease"
)

// LeaseCollection is the collection of the conversion leases (database
// "videos"): one document per video being converted, keyed by the video's
// ID like its job, and removed when the conversion ends.
//
// The leases live beside the jobs, not in them, because a video stored by
// the original gateway has no job record and needs a lease all the same,
// and because a job record may be deleted while its video converts; one
// place for every lease leaves no gap between two kinds.
const LeaseCollection = "leases"

// Sentinel errors of the leases: those of internal/lease, where the
// leases are kept.
var (
	// ErrLeased is wrapped by TakeLease's error when another holder's lease
	// is in force (see LeaseHeldError), or another taker is taking it over.
	ErrLeased = lease.ErrHeld
	// ErrLeaseLost is RenewLease's error when the lease is no longer the
	// caller's: it expired and somebody else took it, or it was released.
	ErrLeaseLost = lease.ErrLost
)

// Holder says who holds a lease. Owner is unique to the holder (one
// conversion in one process) and is what the lease's operations compare;
// the other fields say which process it is, for the logs and for a taker
// on the same machine to tell that the holder died (see TakeLease).
type Holder struct {
	Owner string `bson:"owner"`
	Host  string `bson:"host,omitempty"`   // hostname
	Boot  string `bson:"boot,omitempty"`   // the kernel's boot ID
	PIDNS string `bson:"pid_ns,omitempty"` // the PID namespace
	PID   int    `bson:"pid,omitempty"`
	Start int64  `bson:"start,omitempty"` // the process's start time (clock ticks since boot)
}

// Lease is a holder's exclusive claim on a job, in force until Until.
type Lease struct {
	ID     string `bson:"_id"`
	Holder `bson:",inline"`
	Since  time.Time `bson:"since"`
	Until  time.Time `bson:"until"`
	// Previous is, in what TakeLease returns, the holder whose lease (expired,
	// or of a dead holder) this one replaced; nil otherwise. Not stored.
	Previous *Holder `bson:"-"`
}

// LeaseHeldError is TakeLease's error (wrapping ErrLeased) when another
// holder's lease is in force.
type LeaseHeldError struct{ Lease Lease }

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("job %s is leased by %s (pid %d on %s) until %s", e.Lease.ID, e.Lease.Owner,
		e.Lease.PID, e.Lease.Host, e.Lease.Until.Format(time.RFC3339Nano))
}

func (e *LeaseHeldError) Unwrap() error { return ErrLeased }

// TakeLease gives h the lease on job id for ttl when nobody holds it, when
// its lease expired, when h holds it already (then it is renewed), or when
// dead (nil: never) reports its holder dead; otherwise it returns a
// *LeaseHeldError. Of several takers at once exactly one gets it, on
// MongoDB and on FerretDB alike (see internal/lease for how).
//
// Leases are measured by the takers' clocks, which must agree to well
// within a ttl (NTP).
func (s *Store) TakeLease(ctx context.Context, id string, h Holder, ttl time.Duration, dead func(Holder) bool) (Lease, error) {
	if id == "" || h.Owner == "" || ttl <= 0 {
		return Lease{}, fmt.Errorf("take lease on %q: empty id or owner, or ttl %s", id, ttl)
	}
	lh, err := h.lease()
	if err != nil {
		return Lease{}, fmt.Errorf("take lease on %s: %w", id, err)
	}
	var opt lease.TakeOptions
	if dead != nil {
		opt.Dead = func(other lease.Holder) bool { return dead(holder(other)) }
	}
	l, err := s.leaseStore().Take(ctx, id, lh, ttl, opt)
	var held *lease.HeldError
	switch {
	case errors.As(err, &held):
		return Lease{}, &LeaseHeldError{Lease: fromLease(id, held.Lease)}
	case err != nil:
		return Lease{}, err
	}
	return fromLease(id, l), nil
}

// RenewLease extends owner's lease on job id to ttl from now, whether or not
// it had expired, unless somebody else took it (or it was released): then
// ErrLeaseLost.
func (s *Store) RenewLease(ctx context.Context, id, owner string, ttl time.Duration) error {
	return s.leaseStore().Renew(ctx, id, owner, ttl)
}

// ReleaseLease ends owner's lease on job id; it does nothing when the lease
// is not (or no longer) owner's.
func (s *Store) ReleaseLease(ctx context.Context, id, owner string) error {
	return s.leaseStore().Release(ctx, id, owner)
}

// GetLease returns the lease on job id, expired or not; ErrNotFound when
// there is none.
func (s *Store) GetLease(ctx context.Context, id string) (Lease, error) {
	l, err := s.leaseStore().Get(ctx, id)
	switch {
	case errors.Is(err, lease.ErrNotFound):
		return Lease{}, fmt.Errorf("get lease on %s: %w", id, ErrNotFound)
	case err != nil:
		return Lease{}, err
	}
	return fromLease(id, l), nil
}

// leaseStore is the store of the leases, on the jobs' clock.
func (s *Store) leaseStore() *lease.Store {
	return lease.NewStore(s.leases, lease.Options{Now: s.now})
}

// lease is h as a lease holder: its fields other than Owner are stored
// inline beside it.
func (h Holder) lease() (lease.Holder, error) {
	extra, err := bson.Marshal(h)
	if err != nil {
		return lease.Holder{}, fmt.Errorf("holder: %w", err)
	}
	return lease.Holder{Owner: h.Owner, Extra: extra}, nil
}

// holder is the Holder that lh stores; of fields it cannot read, the
// zero value.
func holder(lh lease.Holder) Holder {
	var h Holder
	if len(lh.Extra) > 0 {
		_ = bson.Unmarshal(lh.Extra, &h)
	}
	h.Owner = lh.Owner
	return h
}

// fromLease is l, the lease on job id.
func fromLease(id string, l lease.Lease) Lease {
	out := Lease{ID: id, Holder: holder(l.Holder), Since: l.Since, Until: l.Until}
	if l.Previous != nil {
		prev := holder(*l.Previous)
		out.Previous = &prev
	}
	return out
}
