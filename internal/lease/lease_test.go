package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/testenv"
)

// newStore returns a store over a fresh collection, and the collection.
func newStore(t *testing.T, opt Options) (*Store, *mongo.Collection, context.Context) {
	t.Helper()
	c := testenv.Mongo(t).Collection("leases")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return NewStore(c, opt), c, ctx
}

func extra(t *testing.T, doc any) bson.Raw {
	t.Helper()
	raw, err := bson.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// The stored document is {_id, owner (under the store's name for it), the
// holder's fields, since, until}: the shape other replicas, and the code
// before this package, read and write.
func TestStoredShape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		field string // Options.OwnerField
		id    any
	}{
		{"", bson.NewObjectID().Hex()},
		{"writer", bson.NewObjectID()},
	} {
		t.Run(fmt.Sprintf("%T owner field %q", tc.id, tc.field), func(t *testing.T) {
			t.Parallel()
			s, c, ctx := newStore(t, Options{OwnerField: tc.field})
			owner := tc.field
			if owner == "" {
				owner = "owner"
			}
			// Extra's fields named like the lease's own are left out.
			h := Holder{Owner: "a", Extra: extra(t, bson.D{{Key: owner, Value: "ignored"}, {Key: "host", Value: "h"},
				{Key: "pid", Value: int32(10)}, {Key: "until", Value: "ignored"}})}
			l, err := s.Take(ctx, tc.id, h, time.Minute, TakeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			raw, err := c.FindOne(ctx, bson.D{{Key: "_id", Value: tc.id}}).Raw()
			if err != nil {
				t.Fatal(err)
			}
			elems, err := raw.Elements()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range elems {
				got = append(got, e.Key()+":"+e.Value().Type.String())
			}
			idType := bson.TypeString
			if _, ok := tc.id.(bson.ObjectID); ok {
				idType = bson.TypeObjectID
			}
			want := []string{"_id:" + idType.String(), owner + ":" + bson.TypeString.String(), "host:" + bson.TypeString.String(),
				"pid:" + bson.TypeInt32.String(), "since:" + bson.TypeDateTime.String(), "until:" + bson.TypeDateTime.String()}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("stored %v, want %v", got, want)
			}
			if v, _ := raw.Lookup(owner).StringValueOK(); v != "a" {
				t.Errorf("owner %q, want a", v)
			}
			if u := raw.Lookup("until").Time(); !u.Equal(l.Until) || l.Until.Sub(l.Since) != time.Minute {
				t.Errorf("until %s, lease %+v", u, l)
			}
			got2, err := s.Get(ctx, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			var x struct {
				Host string `bson:"host"`
				PID  int    `bson:"pid"`
			}
			if err := bson.Unmarshal(got2.Extra, &x); err != nil || x.Host != "h" || x.PID != 10 || got2.Owner != "a" ||
				!got2.Until.Equal(l.Until) || !got2.Since.Equal(l.Since) {
				t.Errorf("get: %+v (extra %+v, %v); want the lease taken, %+v", got2, x, err, l)
			}
			if _, err := got2.Extra.LookupErr(owner); err == nil {
				t.Errorf("extra %s holds the owner", got2.Extra)
			}
		})
	}
}

func TestTakeRenewRelease(t *testing.T) {
	t.Parallel()
	s, _, ctx := newStore(t, Options{})
	id := bson.NewObjectID().Hex()
	a, b := Holder{Owner: "a"}, Holder{Owner: "b", Extra: extra(t, bson.M{"host": "hb"})}

	la, err := s.Take(ctx, id, a, time.Minute, TakeOptions{})
	if err != nil || la.Owner != "a" || la.Previous != nil || time.Until(la.Until) < 50*time.Second {
		t.Fatalf("take a free lease: %+v, %v", la, err)
	}
	_, err = s.Take(ctx, id, b, time.Minute, TakeOptions{})
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrHeld) || held.Lease.Owner != "a" || !held.Lease.Until.Equal(la.Until) {
		t.Fatalf("take a held lease: %v, want a HeldError naming a", err)
	}
	again, err := s.Take(ctx, id, a, 2*time.Minute, TakeOptions{})
	if err != nil || !again.Until.After(la.Until) || !again.Since.Equal(la.Since) {
		t.Errorf("take again by its holder: %+v, %v; want renewed, since unchanged", again, err)
	}
	if _, err := s.Take(ctx, id, a, time.Minute, TakeOptions{NoRenew: true}); !errors.As(err, &held) {
		t.Errorf("take again by its holder's name with NoRenew: %v, want a HeldError", err)
	}
	if err := s.Renew(ctx, id, "b", time.Minute); !errors.Is(err, ErrLost) {
		t.Errorf("renew by another: %v, want ErrLost", err)
	}
	if err := s.Release(ctx, id, "b"); err != nil {
		t.Errorf("release by another: %v", err)
	}
	if l, err := s.Get(ctx, id); err != nil || l.Owner != "a" {
		t.Errorf("after another's release: %+v, %v; want still a's", l, err)
	}
	if err := s.Release(ctx, id, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("after release: %v, want ErrNotFound", err)
	}
	if err := s.Renew(ctx, id, "a", time.Minute); !errors.Is(err, ErrLost) {
		t.Errorf("renew after release: %v, want ErrLost", err)
	}
	if l, err := s.Take(ctx, id, b, time.Minute, TakeOptions{}); err != nil || l.Owner != "b" {
		t.Errorf("take a released lease: %+v, %v", l, err)
	}
	for _, bad := range []struct {
		id  any
		h   Holder
		ttl time.Duration
	}{{"", a, time.Minute}, {nil, a, time.Minute}, {"x", Holder{}, time.Minute}, {"x", a, 0}} {
		if _, err := s.Take(ctx, bad.id, bad.h, bad.ttl, TakeOptions{}); err == nil || errors.Is(err, ErrHeld) {
			t.Errorf("take %v by %q for %s: %v, want refused", bad.id, bad.h.Owner, bad.ttl, err)
		}
	}
}

// A lease is taken over when it expired, when Dead says its holder is
// gone, or when its owner is superseded; Dead is asked only about a lease
// in force that is not superseded.
func TestTakeOver(t *testing.T) {
	t.Parallel()
	s, _, ctx := newStore(t, Options{})
	a := Holder{Owner: "a", Extra: extra(t, bson.M{"pid": int32(10)})}
	b := Holder{Owner: "b"}
	var asked []Holder
	dead := func(h Holder) bool { asked = append(asked, h); return h.Owner == "a" }
	alive := func(h Holder) bool { asked = append(asked, h); return false }

	id := bson.NewObjectID()
	if _, err := s.Take(ctx, id, a, 300*time.Millisecond, TakeOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // scenario, not evidence: the 300 ms lease expires
	l, err := s.Take(ctx, id, b, time.Minute, TakeOptions{Dead: alive})
	if err != nil || l.Owner != "b" || l.Previous == nil || l.Previous.Owner != "a" || l.Previous.Extra.Lookup("pid").Int32() != 10 {
		t.Fatalf("take an expired lease: %+v, %v; want it, with a as the previous holder", l, err)
	}
	if err := s.Renew(ctx, id, "a", time.Minute); !errors.Is(err, ErrLost) {
		t.Errorf("renew by the holder whose lease expired and was taken: %v, want ErrLost", err)
	}
	if len(asked) != 0 {
		t.Errorf("Dead asked about an expired lease's holder: %+v", asked)
	}

	id = bson.NewObjectID()
	if _, err := s.Take(ctx, id, a, time.Hour, TakeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Take(ctx, id, b, time.Minute, TakeOptions{Dead: alive}); !errors.Is(err, ErrHeld) {
		t.Errorf("take a live holder's lease: %v, want ErrHeld", err)
	}
	if _, err := s.Take(ctx, id, b, time.Minute, TakeOptions{Supersede: "someone-else"}); !errors.Is(err, ErrHeld) {
		t.Errorf("take a lease superseding another owner than its: %v, want ErrHeld", err)
	}
	asked = nil
	if l, err := s.Take(ctx, id, b, time.Minute, TakeOptions{Dead: dead}); err != nil || l.Owner != "b" || l.Previous == nil || l.Previous.Owner != "a" {
		t.Errorf("take a dead holder's lease: %+v, %v; want it, with a as the previous holder", l, err)
	}
	if len(asked) != 1 || asked[0].Owner != "a" || asked[0].Extra.Lookup("pid").Int32() != 10 {
		t.Errorf("Dead was asked about %+v, want a with its fields", asked)
	}

	id = bson.NewObjectID()
	if _, err := s.Take(ctx, id, a, time.Hour, TakeOptions{}); err != nil {
		t.Fatal(err)
	}
	asked = nil
	if l, err := s.Take(ctx, id, b, time.Minute, TakeOptions{Supersede: "a", Dead: alive}); err != nil || l.Previous == nil || l.Previous.Owner != "a" {
		t.Errorf("take a superseded owner's lease: %+v, %v; want it", l, err)
	}
	if len(asked) != 0 {
		t.Errorf("Dead asked about a superseded holder: %+v", asked)
	}
	if l, err := s.Get(ctx, id); err != nil || l.Owner != "b" || time.Until(l.Until) > time.Minute {
		t.Errorf("after the takeover: %+v, %v; want b's one-minute lease", l, err)
	}
}

// A takeover marker that a taker (this code, or an older replica's, which
// names leases the same way) has inserted for a lease stops every other
// taker of that lease: the marker's _id is the protocol.
func TestTakeOverMarkerDecides(t *testing.T) {
	t.Parallel()
	s, c, ctx := newStore(t, Options{OwnerField: "writer"})
	for _, id := range []any{bson.NewObjectID(), "job-1"} {
		old, err := s.Take(ctx, id, Holder{Owner: "old"}, time.Millisecond, TakeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		text := fmt.Sprint(id)
		if oid, ok := id.(bson.ObjectID); ok {
			text = oid.Hex()
		}
		marker := fmt.Sprintf("takeover:%s:old:%d", text, old.Until.UnixMilli())
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: marker}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // scenario, not evidence: the 1 ms lease expires
		_, err = s.Take(ctx, id, Holder{Owner: "new"}, time.Minute, TakeOptions{})
		var held *HeldError
		if !errors.Is(err, ErrHeld) || errors.As(err, &held) {
			t.Errorf("%v: take while another taker's marker is there: %v, want ErrHeld (not a HeldError)", id, err)
		}
		if l, err := s.Get(ctx, id); err != nil || l.Owner != "old" {
			t.Errorf("%v: after the refused takeover: %+v, %v; want old's lease untouched", id, l, err)
		}
		if _, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: marker}}); err != nil {
			t.Fatal(err)
		}
		if l, err := s.Take(ctx, id, Holder{Owner: "new"}, time.Minute, TakeOptions{}); err != nil || l.Previous == nil {
			t.Errorf("%v: take once the marker is gone: %+v, %v", id, l, err)
		}
	}
	if n, err := c.CountDocuments(ctx, bson.D{}); err != nil || n != 2 {
		t.Errorf("%d documents left (%v), want the 2 leases and no marker", n, err)
	}
}

// Takers of one lease, all at once: exactly one gets it, whether it was
// free, had expired or was held by a dead holder; the others get ErrHeld,
// and no marker is left.
func TestTakeContended(t *testing.T) {
	t.Parallel()
	s, c, ctx := newStore(t, Options{})
	for _, before := range []string{"free", "expired", "dead holder"} {
		for round := range 10 {
			id := bson.NewObjectID().Hex()
			var opt TakeOptions
			switch before {
			case "expired":
				if _, err := s.Take(ctx, id, Holder{Owner: "old"}, time.Millisecond, TakeOptions{}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond) // scenario, not evidence: the 1 ms lease expires
			case "dead holder":
				if _, err := s.Take(ctx, id, Holder{Owner: "old"}, time.Hour, TakeOptions{}); err != nil {
					t.Fatal(err)
				}
				opt.Dead = func(h Holder) bool { return h.Owner == "old" }
			}
			errs := atOnce(6, func(i int) error {
				_, err := s.Take(ctx, id, Holder{Owner: fmt.Sprint("taker-", i)}, time.Minute, opt)
				return err
			})
			won := -1
			for i, err := range errs {
				switch {
				case err == nil && won >= 0:
					t.Fatalf("%s round %d: taker-%d and taker-%d both got the lease", before, round, won, i)
				case err == nil:
					won = i
				case !errors.Is(err, ErrHeld):
					t.Errorf("%s round %d: %v, want nil or ErrHeld", before, round, err)
				}
			}
			if won < 0 {
				t.Fatalf("%s round %d: no taker got the lease: %v", before, round, errs)
			}
			if l, err := s.Get(ctx, id); err != nil || l.Owner != fmt.Sprint("taker-", won) {
				t.Errorf("%s round %d: taker-%d won, the lease is %+v, %v", before, round, won, l, err)
			}
		}
	}
	if n, err := c.CountDocuments(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$regex", Value: "^takeover:"}}}}); err != nil || n != 0 {
		t.Errorf("%d takeover markers left (%v), want none", n, err)
	}
}

// atOnce calls f(0) … f(n-1) in n goroutines released together, and
// returns their errors.
func atOnce(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { <-start; errs[i] = f(i) })
	}
	close(start)
	wg.Wait()
	return errs
}
