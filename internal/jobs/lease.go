package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
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

// Sentinel errors of the leases.
var (
	// ErrLeased is wrapped by TakeLease's error when another holder's lease
	// is in force (see LeaseHeldError).
	ErrLeased = errors.New("leased by another worker")
	// ErrLeaseLost is RenewLease's error when the lease is no longer the
	// caller's: it expired and somebody else took it, or it was released.
	ErrLeaseLost = errors.New("lease lost")
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
// MongoDB and on FerretDB alike: a free lease is created by an insert, and
// an expired (or dead) one is taken over by the taker whose insert of a
// claim on that very lease (its owner and expiry) succeeds; the unique _id
// decides both. (FerretDB 1.x applies a conditional update or delete in two
// steps, a find and then a write by _id, so a conditional write alone
// would let two takers win.)
//
// Leases are measured by the takers' clocks, which must agree to well
// within a ttl (NTP).
func (s *Store) TakeLease(ctx context.Context, id string, h Holder, ttl time.Duration, dead func(Holder) bool) (Lease, error) {
	if id == "" || h.Owner == "" || ttl <= 0 {
		return Lease{}, fmt.Errorf("take lease on %q: empty id or owner, or ttl %s", id, ttl)
	}
	for range 5 {
		now := s.now()
		l := Lease{ID: id, Holder: h, Since: now, Until: now.Add(ttl)}
		_, err := s.leases.InsertOne(ctx, l)
		switch {
		case err == nil:
			return l, nil
		case !mongo.IsDuplicateKeyError(err):
			return Lease{}, fmt.Errorf("take lease on %s: %w", id, err)
		}
		cur, err := s.GetLease(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // released meanwhile
		case err != nil:
			return Lease{}, fmt.Errorf("take lease on %s: %w", id, err)
		case cur.Owner == h.Owner:
			switch err := s.RenewLease(ctx, id, h.Owner, ttl); {
			case err == nil:
				cur.Until = now.Add(ttl)
				return cur, nil
			case errors.Is(err, ErrLeaseLost):
				continue
			default:
				return Lease{}, fmt.Errorf("take lease on %s: %w", id, err)
			}
		case !cur.Until.After(now) || (dead != nil && dead(cur.Holder)):
			switch taken, err := s.takeOver(ctx, cur, l); {
			case err != nil:
				return Lease{}, err
			case taken:
				l.Previous = &cur.Holder
				return l, nil
			}
			// It changed meanwhile (released, or renewed): look again.
		default:
			return Lease{}, &LeaseHeldError{Lease: cur}
		}
	}
	return Lease{}, fmt.Errorf("take lease on %s: contended: %w", id, ErrLeased)
}

// takeOver replaces the lease old (expired, or its holder dead) with l,
// if this taker is the one whose claim on old is inserted first; taken is
// false when old changed meanwhile. Losing the claim is ErrLeased.
func (s *Store) takeOver(ctx context.Context, old, l Lease) (taken bool, err error) {
	claim := fmt.Sprintf("takeover:%s:%s:%d", old.ID, old.Owner, old.Until.UnixMilli())
	if _, err := s.leases.InsertOne(ctx, bson.D{{Key: "_id", Value: claim}, {Key: "owner", Value: l.Owner},
		{Key: "since", Value: l.Since}}); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return false, fmt.Errorf("take over lease on %s from %s: %w (another worker is taking it over)", old.ID, old.Owner, ErrLeased)
		}
		return false, fmt.Errorf("take over lease on %s from %s: %w", old.ID, old.Owner, err)
	}
	res, err := s.leases.ReplaceOne(ctx, bson.D{{Key: "_id", Value: old.ID}, {Key: "owner", Value: old.Owner},
		{Key: "until", Value: old.Until}}, l)
	// The claim has done its work either way: only the first could make it.
	// One left behind (the delete failed) is harmless: it names a lease
	// that no longer exists.
	_, _ = s.leases.DeleteOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: claim}})
	if err != nil {
		return false, fmt.Errorf("take over lease on %s from %s: %w", old.ID, old.Owner, err)
	}
	return res.MatchedCount > 0, nil
}

// RenewLease extends owner's lease on job id to ttl from now, whether or not
// it had expired, unless somebody else took it (or it was released): then
// ErrLeaseLost.
func (s *Store) RenewLease(ctx context.Context, id, owner string, ttl time.Duration) error {
	res, err := s.leases.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "owner", Value: owner}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "until", Value: s.now().Add(ttl)}}}})
	switch {
	case err != nil:
		return fmt.Errorf("renew lease on %s: %w", id, err)
	case res.MatchedCount == 0:
		return fmt.Errorf("renew lease on %s: %w", id, ErrLeaseLost)
	}
	return nil
}

// ReleaseLease ends owner's lease on job id; it does nothing when the lease
// is not (or no longer) owner's.
func (s *Store) ReleaseLease(ctx context.Context, id, owner string) error {
	if _, err := s.leases.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "owner", Value: owner}}); err != nil {
		return fmt.Errorf("release lease on %s: %w", id, err)
	}
	return nil
}

// GetLease returns the lease on job id, expired or not; ErrNotFound when
// there is none.
func (s *Store) GetLease(ctx context.Context, id string) (Lease, error) {
	var l Lease
	err := s.leases.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&l)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return Lease{}, fmt.Errorf("get lease on %s: %w", id, ErrNotFound)
	case err != nil:
		return Lease{}, fmt.Errorf("get lease on %s: %w", id, err)
	}
	return l, nil
}
