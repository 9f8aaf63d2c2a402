package tus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/lease"
)

// Locker gives one request at a time an upload, across the replicas: a
// lease per upload in MongoDB, renewed while the request runs. Within one
// replica tusd's memory locker goes first, so that a new request of an
// upload (a client resuming after its connection broke) asks the old one to
// let go at once instead of waiting for its lease to end.
type Locker struct {
	local *memorylocker.MemoryLocker
	store *lease.Store
	ttl   time.Duration
	poll  time.Duration
}

// NewLocker returns the locker whose leases are in c
// (gridfs.PartialLocksCollection, where the sweep removes the stale ones)
// and last ttl
// unrenewed (how long a replica that died keeps an upload from the others).
func NewLocker(c *mongo.Collection, ttl time.Duration) *Locker {
	return &Locker{local: memorylocker.New(), store: lease.NewStore(c, lease.Options{}), ttl: ttl, poll: 200 * time.Millisecond}
}

// UseIn makes l the composer's locker.
func (l *Locker) UseIn(c *tusd.StoreComposer) { c.UseLocker(l) }

// NewLock returns the lock of upload id.
func (l *Locker) NewLock(id string) (tusd.Lock, error) {
	local, err := l.local.NewLock(id)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &lock{l: l, id: id, owner: hex.EncodeToString(b), local: local}, nil
}

type lock struct {
	l     *Locker
	id    string
	owner string
	local tusd.Lock
	stop  func()
}

// Lock takes the upload for this request, waiting while another holds it,
// until ctx ends (tusd.ErrLockTimeout). requestRelease is called when
// another request of this replica wants the upload, or when the lease is
// lost.
func (k *lock) Lock(ctx context.Context, requestRelease func()) error {
	if err := k.local.Lock(ctx, requestRelease); err != nil {
		return err
	}
	for {
		l, err := k.l.store.Take(ctx, k.id, lease.Holder{Owner: k.owner}, k.l.ttl, lease.TakeOptions{NoRenew: true})
		if err == nil {
			renew := func(ctx context.Context) error { return k.l.store.Renew(ctx, k.id, k.owner, k.l.ttl) }
			kctx, stop := lease.Keep(context.WithoutCancel(ctx), k.l.ttl, l.Until, renew, lease.KeepOptions{})
			go func() {
				<-kctx.Done()
				if !errors.Is(context.Cause(kctx), context.Canceled) {
					requestRelease() // the lease is lost: stop writing
				}
			}()
			k.stop = stop
			return nil
		}
		if !errors.Is(err, lease.ErrHeld) {
			_ = k.local.Unlock()
			return err
		}
		select {
		case <-ctx.Done():
			_ = k.local.Unlock()
			return tusd.ErrLockTimeout
		case <-time.After(k.l.poll):
		}
	}
}

// Unlock lets the upload go.
func (k *lock) Unlock() error {
	if k.stop != nil {
		k.stop()
		k.stop = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := k.l.store.Release(ctx, k.id, k.owner)
	if lerr := k.local.Unlock(); err == nil {
		err = lerr
	}
	return err
}
