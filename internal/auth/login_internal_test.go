package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

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
	returned := make(chan error, 1)
	go func() {
		_, err := a.Login(ctx, "someone@example.com", "pw")
		returned <- err
	}()
	// It returns once its caller gives up: still waiting 5 s later is
	// "did not happen".
	<-ctx.Done()
	select {
	case err = <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Login did not return within 5 s of its caller giving up")
	}
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Login with every CPU busy until the caller gave up: %v, want ErrUnavailable (deadline)", err)
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

// costStore knows users whose hashes have different costs.
type costStore map[string]User

func (s costStore) UserByEmail(_ context.Context, email string) (User, error) {
	u, ok := s[email]
	if !ok {
		return User{}, ErrNotFound
	}
	return u, nil
}

func (costStore) UpgradePassword(context.Context, int64, string, string) error { return nil }

// BenchmarkLoginTimingByCost times a refused login for an unknown email
// and for users whose hashes have a lower or the same cost as BCRYPT_COST
// (10): with the padding, a user with an older, cheaper hash takes as long
// as an unknown email, so the time does not tell whether the account
// exists. The ratios are reported (goal: 0.9 to 1.1).
func BenchmarkLoginTimingByCost(b *testing.B) {
	tokens, _ := token.New("s", time.Hour)
	store := costStore{}
	for _, c := range []int{4, 8, 10} {
		h, _ := bcrypt.GenerateFromPassword([]byte("right"), c)
		store[fmt.Sprintf("cost%d@x", c)] = User{ID: int64(c), Email: fmt.Sprintf("cost%d@x", c), Password: string(h), Scheme: schemeBcrypt}
	}
	a, err := NewAuthenticator(store, tokens, PasswordOptions{Cost: 10}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	timeOf := func(email string) time.Duration {
		const n = 8
		start := time.Now()
		for range n {
			if _, err := a.Login(context.Background(), email, "wrong"); !errors.Is(err, ErrInvalidCredentials) {
				b.Fatal(err)
			}
		}
		return time.Since(start) / n
	}
	b.ResetTimer()
	var unknown, c4, c8, c10 time.Duration
	for range 3 { // alternate, so that machine noise hits all alike
		unknown += timeOf("nobody@x")
		c4 += timeOf("cost4@x")
		c8 += timeOf("cost8@x")
		c10 += timeOf("cost10@x")
	}
	for name, d := range map[string]time.Duration{"cost4": c4, "cost8": c8, "cost10": c10} {
		b.ReportMetric(float64(d)/float64(unknown), name+"/unknown")
	}
	b.Logf("refused login: unknown email %s, cost-4 user %s, cost-8 %s, cost-10 %s (per login, 3 rounds of 8)",
		unknown/3, c4/3, c8/3, c10/3)
}
