package auth

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"mp3converter/internal/token"
)

// countingStore counts lookups; every user is unknown.
type countingStore struct{ lookups atomic.Int32 }

func (s *countingStore) UserByEmail(context.Context, string) (User, error) {
	s.lookups.Add(1)
	return User{}, ErrNotFound
}

func (s *countingStore) UpgradePassword(context.Context, int64, string, string) error { return nil }

// While every CPU is busy with other logins, a login waits its turn; when
// its caller gives up first it returns ErrUnavailable at once, without
// touching the database or spending a bcrypt comparison (a burst of logins
// used to run all at once and finish, all of them, after the gateway's
// timeout).
func TestLoginWaitsForACPUAndGivesUpWithItsCaller(t *testing.T) {
	tokens, err := token.New("secret", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{}
	a, err := NewAuthenticator(store, tokens, PasswordOptions{Cost: 4}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for range cap(a.slots) { // every CPU busy
		a.slots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = a.Login(ctx, "someone@example.com", "pw")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Login with every CPU busy until the caller gave up: %v, want ErrUnavailable (deadline)", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Login returned %s after its caller gave up", took)
	}
	if n := store.lookups.Load(); n != 0 {
		t.Fatalf("%d database lookups for an abandoned login, want 0", n)
	}

	// A CPU frees up: the next login runs (and, the user unknown, fails as usual).
	<-a.slots
	if _, err := a.Login(context.Background(), "someone@example.com", "pw"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("Login with a CPU free: %v, want ErrInvalidCredentials", err)
	}
	if n := store.lookups.Load(); n != 1 {
		t.Fatalf("%d database lookups, want 1", n)
	}
}
