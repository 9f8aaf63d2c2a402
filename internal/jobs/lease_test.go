package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestLeaseTakeRenewRelease(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	id := bson.NewObjectID().Hex()
	a := Holder{Owner: "host-a/1#1", Host: "host-a", PID: 10}
	b := Holder{Owner: "host-b/2#1", Host: "host-b", PID: 20}

	la, err := s.TakeLease(ctx, id, a, time.Minute, nil)
	if err != nil {
		t.Fatalf("take a free lease: %v", err)
	}
	if la.Owner != a.Owner || la.Host != "host-a" || time.Until(la.Until) < 50*time.Second {
		t.Errorf("lease %+v", la)
	}
	_, err = s.TakeLease(ctx, id, b, time.Minute, nil)
	var held *LeaseHeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLeased) || held.Lease.Owner != a.Owner || held.Lease.Host != "host-a" {
		t.Fatalf("take a held lease: %v, want a LeaseHeldError naming a", err)
	}
	// Taking it again is renewing it (for two minutes: later than the
	// first minute whatever the clock's resolution).
	again, err := s.TakeLease(ctx, id, a, 2*time.Minute, nil)
	if err != nil || !again.Until.After(la.Until) {
		t.Errorf("take again by its holder: %+v, %v; want renewed", again, err)
	}
	if err := s.RenewLease(ctx, id, b.Owner, time.Minute); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("renew by another: %v, want ErrLeaseLost", err)
	}
	if err := s.RenewLease(ctx, id, a.Owner, time.Minute); err != nil {
		t.Errorf("renew by its holder: %v", err)
	}
	if err := s.ReleaseLease(ctx, id, b.Owner); err != nil {
		t.Errorf("release by another: %v", err)
	}
	if l, err := s.GetLease(ctx, id); err != nil || l.Owner != a.Owner {
		t.Errorf("after another's release: %+v, %v; want still a's", l, err)
	}
	if err := s.ReleaseLease(ctx, id, a.Owner); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLease(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("after release: %v, want ErrNotFound", err)
	}
	if err := s.RenewLease(ctx, id, a.Owner, time.Minute); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("renew after release: %v, want ErrLeaseLost", err)
	}
	if _, err := s.TakeLease(ctx, id, b, time.Minute, nil); err != nil {
		t.Errorf("take a released lease: %v", err)
	}
}

func TestLeaseExpiredOrDeadHolderIsTakenOver(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	a := Holder{Owner: "a", Host: "h", PID: 10}
	b := Holder{Owner: "b", Host: "h", PID: 20}

	id := bson.NewObjectID().Hex()
	if _, err := s.TakeLease(ctx, id, a, 300*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // scenario, not evidence: the 300 ms lease expires
	if l, err := s.TakeLease(ctx, id, b, time.Minute, nil); err != nil || l.Previous == nil || l.Previous.Owner != "a" {
		t.Fatalf("take an expired lease: %+v, %v; want it, with a as the previous holder", l, err)
	}
	if err := s.RenewLease(ctx, id, a.Owner, time.Minute); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("renew by the holder whose lease expired and was taken: %v, want ErrLeaseLost", err)
	}

	id = bson.NewObjectID().Hex()
	if _, err := s.TakeLease(ctx, id, a, time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	alive := func(Holder) bool { return false }
	if _, err := s.TakeLease(ctx, id, b, time.Minute, alive); !errors.Is(err, ErrLeased) {
		t.Errorf("take a live holder's lease: %v, want ErrLeased", err)
	}
	var asked []Holder
	dead := func(h Holder) bool { asked = append(asked, h); return h.PID == 10 }
	if l, err := s.TakeLease(ctx, id, b, time.Minute, dead); err != nil || l.Owner != "b" || l.Previous == nil || l.Previous.PID != 10 {
		t.Errorf("take a dead holder's lease: %+v, %v; want it, with a as the previous holder", l, err)
	}
	if l, err := s.TakeLease(ctx, id, b, time.Minute, nil); err != nil || l.Previous != nil {
		t.Errorf("take again by its holder: %+v, %v; want no previous holder", l, err)
	}
	if len(asked) != 1 || asked[0].Owner != "a" || asked[0].PID != 10 {
		t.Errorf("dead was asked about %+v, want a", asked)
	}
}

// Contenders for one lease, all at once: exactly one gets it, whether it
// was free or had expired.
func TestLeaseContended(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	for _, expired := range []bool{false, true} {
		for round := range 10 {
			id := bson.NewObjectID().Hex()
			if expired {
				if _, err := s.TakeLease(ctx, id, Holder{Owner: "old"}, time.Millisecond, nil); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond) // scenario, not evidence: the 1 ms lease expires
			}
			const n = 6
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				errs  = make([]error, n)
			)
			for i := range n {
				wg.Go(func() {
					<-start
					_, errs[i] = s.TakeLease(ctx, id, Holder{Owner: fmt.Sprint("taker-", i)}, time.Minute, nil)
				})
			}
			close(start)
			wg.Wait()
			won := 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, ErrLeased):
					t.Errorf("expired %v round %d: %v, want nil or ErrLeased", expired, round, err)
				}
			}
			if won != 1 {
				t.Fatalf("expired %v round %d: %d takers got the lease, want exactly 1: %v", expired, round, won, errs)
			}
			l, err := s.GetLease(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			for i, err := range errs {
				if err == nil && l.Owner != fmt.Sprint("taker-", i) {
					t.Errorf("taker-%d won, the lease says %s", i, l.Owner)
				}
			}
		}
	}
}

// A lease is stored as before internal/lease kept it, {_id, owner, host,
// boot, pid_ns, pid, start, since, until}, and read back whole: replicas of
// either version read each other's leases during a rolling update.
func TestLeaseStoredShape(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	id := bson.NewObjectID().Hex()
	h := Holder{Owner: "a", Host: "h", Boot: "b", PIDNS: "ns", PID: 10, Start: 123}
	l, err := s.TakeLease(ctx, id, h, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.leases.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	// What the code before internal/lease inserted: this struct itself.
	if want, err := bson.Marshal(Lease{ID: id, Holder: h, Since: l.Since, Until: l.Until}); err != nil || !bytes.Equal(raw, want) {
		t.Errorf("stored %s, want %s (%v)", raw, bson.Raw(want), err)
	}
	if got, err := s.GetLease(ctx, id); err != nil || got.Holder != h || got.ID != id || !got.Until.Equal(l.Until) {
		t.Errorf("get: %+v, %v; want %+v", got, err, l)
	}
	// One written by hand, as another replica would.
	other := bson.NewObjectID().Hex()
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	if _, err := s.leases.InsertOne(ctx, Lease{ID: other, Holder: Holder{Owner: "b", Host: "hb", PID: 7}, Since: until, Until: until}); err != nil {
		t.Fatal(err)
	}
	_, err = s.TakeLease(ctx, other, h, time.Minute, nil)
	var held *LeaseHeldError
	if !errors.As(err, &held) || held.Lease.Owner != "b" || held.Lease.Host != "hb" || held.Lease.PID != 7 || !held.Lease.Until.Equal(until) {
		t.Errorf("take another replica's lease: %v, want a LeaseHeldError naming b on hb, pid 7", err)
	}
}
