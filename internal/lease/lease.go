// Package lease keeps exclusive, expiring leases in a MongoDB collection,
// one document a lease: {_id, owner, the holder's other fields, since,
// until}. The converters' leases on videos (internal/jobs), the uploads'
// claims on file IDs (internal/gridfs) and the retention sweeper's lease
// are all leases of this package.
//
// Of several takers at once exactly one gets a lease, on MongoDB and on
// FerretDB alike. A free lease is created by an insert: the unique _id
// decides. A lease that expired (or whose holder the caller knows is gone)
// is taken over by the taker that first inserts a marker naming that very
// lease, "takeover:<id>:<owner>:<until in ms>", and only then replaces the
// lease, on the condition that it is still the one the marker names; the
// marker is removed at once. The insert decides here too, because
// FerretDB 1.x applies a conditional update or delete in two steps (a find,
// then a write by _id): a conditional replace alone would let two takers
// that read the same expired lease both win. A marker left behind (its
// removal failed) is harmless: it names a lease that no longer exists.
//
// Leases are measured by the takers' clocks, which must agree to well
// within a ttl (NTP): a taker whose clock runs ahead by a ttl takes over
// leases that are still in force.
package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Sentinel errors of the leases.
var (
	// ErrHeld is wrapped by Take's error when another holder has the lease
	// (see HeldError) or is taking it over.
	ErrHeld = errors.New("leased by another worker")
	// ErrLost is Renew's error when the lease is no longer the caller's:
	// it expired and somebody else took it, or it was released.
	ErrLost = errors.New("lease lost")
	// ErrNotFound is Get's error when there is no lease.
	ErrNotFound = errors.New("no lease")
)

// Options tune a Store. The zero value is the defaults.
type Options struct {
	// OwnerField names the field that holds the owner ["owner"].
	OwnerField string
	// Now is the clock [time.Now, in UTC, to the millisecond].
	Now func() time.Time
}

// Store keeps leases in one collection.
type Store struct {
	c     *mongo.Collection
	owner string
	now   func() time.Time
}

// NewStore returns the store of the leases in c.
func NewStore(c *mongo.Collection, opt Options) *Store {
	s := &Store{c: c, owner: opt.OwnerField, now: opt.Now}
	if s.owner == "" {
		s.owner = "owner"
	}
	if s.now == nil {
		s.now = func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }
	}
	return s
}

// Holder says who holds a lease. Owner is unique to the holder and is what
// the operations compare. Extra (a BSON document, or nil) is stored beside
// it in the lease: who the holder is, for the logs and for a taker to tell
// that it is gone. Extra's fields named like the lease's own (_id, the
// owner field, since, until) are left out.
type Holder struct {
	Owner string
	Extra bson.Raw
}

// Lease is a holder's exclusive claim on ID, in force until Until.
type Lease struct {
	ID any
	Holder
	Since, Until time.Time
	// Previous is, in what Take returns, the holder whose lease (expired,
	// dead or superseded) this one replaced; nil otherwise. Not stored.
	Previous *Holder
}

// HeldError is Take's error (wrapping ErrHeld) when another holder's lease
// is in force.
type HeldError struct{ Lease Lease }

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is leased by %s until %s", idText(e.Lease.ID), e.Lease.Owner, e.Lease.Until.Format(time.RFC3339Nano))
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// TakeOptions say when Take may take a lease that is in force.
type TakeOptions struct {
	// Dead, if set, is asked about the holder of a lease in force (and
	// not superseded): true takes the lease over at once.
	Dead func(Holder) bool
	// Supersede, if set, names an owner that the caller knows is gone:
	// its lease is taken over at once, expired or not.
	Supersede string
	// NoRenew makes a lease in force that the taker's owner holds already
	// refused like anyone else's: each Take is a new holder, whatever its
	// name. Without it, Take renews it.
	NoRenew bool
}

// Take gives h the lease on id for ttl when nobody holds it, when its lease
// expired, when h's owner holds it already (then it is renewed, unless
// opt.NoRenew), or when opt says its holder is gone; otherwise it returns a
// *HeldError. Losing a takeover to another taker, or finding the lease
// changing under it five times, is an error wrapping ErrHeld. See the
// package comment for why exactly one taker wins.
func (s *Store) Take(ctx context.Context, id any, h Holder, ttl time.Duration, opt TakeOptions) (Lease, error) {
	if idText(id) == "" || h.Owner == "" || ttl <= 0 {
		return Lease{}, fmt.Errorf("take lease on %q: empty id or owner, or ttl %s", idText(id), ttl)
	}
	for range 5 {
		now := s.now()
		l := Lease{ID: id, Holder: h, Since: now, Until: now.Add(ttl)}
		doc, err := s.doc(l)
		if err != nil {
			return Lease{}, fmt.Errorf("take lease on %s: %w", idText(id), err)
		}
		_, err = s.c.InsertOne(ctx, doc)
		switch {
		case err == nil:
			return l, nil
		case !mongo.IsDuplicateKeyError(err):
			return Lease{}, fmt.Errorf("take lease on %s: %w", idText(id), err)
		}
		cur, err := s.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // released meanwhile
		case err != nil:
			return Lease{}, fmt.Errorf("take lease on %s: %w", idText(id), err)
		case cur.Owner == h.Owner && !opt.NoRenew:
			switch err := s.Renew(ctx, id, h.Owner, ttl); {
			case err == nil:
				cur.Until = now.Add(ttl)
				return cur, nil
			case errors.Is(err, ErrLost):
				continue
			default:
				return Lease{}, fmt.Errorf("take lease on %s: %w", idText(id), err)
			}
		case !cur.Until.After(now) || (opt.Supersede != "" && cur.Owner == opt.Supersede) ||
			(opt.Dead != nil && opt.Dead(cur.Holder)):
			switch taken, err := s.takeOver(ctx, cur, l, doc); {
			case err != nil:
				return Lease{}, err
			case taken:
				l.Previous = &cur.Holder
				return l, nil
			}
			// It changed meanwhile (released, or renewed): look again.
		default:
			return Lease{}, &HeldError{Lease: cur}
		}
	}
	return Lease{}, fmt.Errorf("take lease on %s: contended: %w", idText(id), ErrHeld)
}

// takeOver replaces the lease old with l (doc as stored), if this taker
// is the one whose marker naming old is inserted first; taken is false
// when old changed meanwhile. Losing the marker is ErrHeld.
func (s *Store) takeOver(ctx context.Context, old, l Lease, doc bson.D) (taken bool, err error) {
	marker := fmt.Sprintf("takeover:%s:%s:%d", idText(old.ID), old.Owner, old.Until.UnixMilli())
	if _, err := s.c.InsertOne(ctx, bson.D{{Key: "_id", Value: marker}, {Key: s.owner, Value: l.Owner},
		{Key: "since", Value: l.Since}}); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return false, fmt.Errorf("take over lease on %s from %s: %w (another worker is taking it over)", idText(old.ID), old.Owner, ErrHeld)
		}
		return false, fmt.Errorf("take over lease on %s from %s: %w", idText(old.ID), old.Owner, err)
	}
	res, err := s.c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: old.ID}, {Key: s.owner, Value: old.Owner},
		{Key: "until", Value: old.Until}}, doc)
	// The marker has done its work either way: only the first could make it.
	_, _ = s.c.DeleteOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: marker}})
	if err != nil {
		return false, fmt.Errorf("take over lease on %s from %s: %w", idText(old.ID), old.Owner, err)
	}
	return res.MatchedCount > 0, nil
}

// Renew extends owner's lease on id to ttl from now, whether or not it had
// expired, unless somebody else took it (or it was released): then ErrLost.
func (s *Store) Renew(ctx context.Context, id any, owner string, ttl time.Duration) error {
	res, err := s.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: s.owner, Value: owner}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "until", Value: s.now().Add(ttl)}}}})
	switch {
	case err != nil:
		return fmt.Errorf("renew lease on %s: %w", idText(id), err)
	case res.MatchedCount == 0:
		return fmt.Errorf("renew lease on %s: %w", idText(id), ErrLost)
	}
	return nil
}

// Release ends owner's lease on id; it does nothing when the lease is not
// (or no longer) owner's.
func (s *Store) Release(ctx context.Context, id any, owner string) error {
	if _, err := s.c.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: s.owner, Value: owner}}); err != nil {
		return fmt.Errorf("release lease on %s: %w", idText(id), err)
	}
	return nil
}

// Get returns the lease on id, expired or not; ErrNotFound when there is
// none.
func (s *Store) Get(ctx context.Context, id any) (Lease, error) {
	raw, err := s.c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return Lease{}, fmt.Errorf("get lease on %s: %w", idText(id), ErrNotFound)
	case err != nil:
		return Lease{}, fmt.Errorf("get lease on %s: %w", idText(id), err)
	}
	l, err := s.parse(id, raw)
	if err != nil {
		return Lease{}, fmt.Errorf("get lease on %s: %w", idText(id), err)
	}
	return l, nil
}

// doc is l as stored: _id, the owner, Extra's fields, since, until.
func (s *Store) doc(l Lease) (bson.D, error) {
	d := bson.D{{Key: "_id", Value: l.ID}, {Key: s.owner, Value: l.Owner}}
	if len(l.Extra) > 0 {
		elems, err := l.Extra.Elements()
		if err != nil {
			return nil, fmt.Errorf("holder's fields: %w", err)
		}
		for _, e := range elems {
			if !s.own(e.Key()) {
				d = append(d, bson.E{Key: e.Key(), Value: e.Value()})
			}
		}
	}
	return append(d, bson.E{Key: "since", Value: l.Since}, bson.E{Key: "until", Value: l.Until}), nil
}

// parse reads the lease on id from its stored document.
func (s *Store) parse(id any, raw bson.Raw) (Lease, error) {
	var times struct {
		Since time.Time `bson:"since"`
		Until time.Time `bson:"until"`
	}
	if err := bson.Unmarshal(raw, &times); err != nil {
		return Lease{}, err
	}
	l := Lease{ID: id, Since: times.Since, Until: times.Until}
	l.Owner, _ = raw.Lookup(s.owner).StringValueOK()
	elems, err := raw.Elements()
	if err != nil {
		return Lease{}, err
	}
	var extra bson.D
	for _, e := range elems {
		if !s.own(e.Key()) {
			extra = append(extra, bson.E{Key: e.Key(), Value: e.Value()})
		}
	}
	if len(extra) > 0 {
		if l.Extra, err = bson.Marshal(extra); err != nil {
			return Lease{}, err
		}
	}
	return l, nil
}

// own reports whether key is one of the lease's own fields.
func (s *Store) own(key string) bool {
	return key == "_id" || key == s.owner || key == "since" || key == "until"
}

// idText is id as the errors and the takeover markers name it: an
// ObjectID in hex.
func idText(id any) string {
	switch v := id.(type) {
	case string:
		return v
	case bson.ObjectID:
		return v.Hex()
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}
