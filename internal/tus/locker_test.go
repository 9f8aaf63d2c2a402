package tus

import (
	"context"
	"errors"
	"testing"
	"time"

	tusd "github.com/tus/tusd/v2/pkg/handler"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/testenv"
)

// One request at a time has an upload, across replicas (two Lockers on one
// collection); within a replica a new request asks the holder to let go.
func TestLocker(t *testing.T) {
	t.Parallel()
	c := testenv.Mongo(t).Collection(gridfs.PartialLocksCollection)
	a, b := NewLocker(c, 1500*time.Millisecond), NewLocker(c, 1500*time.Millisecond)
	ctx := context.Background()

	la, _ := a.NewLock("u1")
	released := make(chan struct{}, 1)
	if err := la.Lock(ctx, func() { released <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	// Another replica waits, and gives up when its context ends.
	lb, _ := b.NewLock("u1")
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := lb.Lock(short, func() {})
	cancel()
	if !errors.Is(err, tusd.ErrLockTimeout) {
		t.Fatalf("a second replica's lock while the first holds it: %v, want ErrLockTimeout", err)
	}
	// Another upload is not held up.
	other, _ := b.NewLock("u2")
	if err := other.Lock(ctx, func() {}); err != nil {
		t.Fatalf("another upload's lock: %v", err)
	}
	_ = other.Unlock()

	// Held past its ttl: the lease is renewed, the other replica still waits.
	time.Sleep(2 * time.Second)
	short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	err = lb.Lock(short, func() {})
	cancel()
	if !errors.Is(err, tusd.ErrLockTimeout) {
		t.Fatalf("after the ttl, with renewals: %v, want ErrLockTimeout", err)
	}

	// The same replica: the holder is asked to let go.
	la2, _ := a.NewLock("u1")
	got := make(chan error, 1)
	go func() { got <- la2.Lock(ctx, func() {}) }()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the holder was not asked to let go")
	}
	if err := la.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the new request's lock once the old let go: %v", err)
	}
	if err := la2.Unlock(); err != nil {
		t.Fatal(err)
	}
	// Free again: the other replica gets it.
	if err := lb.Lock(ctx, func() {}); err != nil {
		t.Fatalf("the other replica once free: %v", err)
	}
	_ = lb.Unlock()
}
