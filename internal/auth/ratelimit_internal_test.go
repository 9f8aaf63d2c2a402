package auth

import (
	"fmt"
	"testing"
	"time"
)

// An IPv6 client gets one bucket for its /64, not one per address it can
// take from it; IPv4 addresses (also IPv4 in IPv6) stay one bucket each.
func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ addr, key string }{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"::1", "::/64"},
		{"not-an-address", "not-an-address"},
	} {
		if got := addrKey(tc.addr); got != tc.key {
			t.Errorf("addrKey(%q) = %q, want %q", tc.addr, got, tc.key)
		}
	}
	l := newLimiter(0.001, 2)
	now := time.Now()
	for i := range 2 {
		if ok, _ := l.allow(addrKey(fmt.Sprintf("2001:db8::%x", i+1)), now); !ok {
			t.Fatalf("attempt %d refused", i)
		}
	}
	if ok, _ := l.allow(addrKey("2001:db8::ffff:1"), now); ok {
		t.Fatal("a third address of the same /64 got a fresh bucket")
	}
}

// The map of buckets stays bounded however many keys arrive; a new key
// evicts a bucket that is full again before one that is in use.
func TestLimiterIsBounded(t *testing.T) {
	l := newLimiter(1, 3)
	l.max = 100
	now := time.Now()
	for i := range 10_000 {
		l.allow(fmt.Sprintf("k%d", i), now)
		if len(l.clients) > l.max {
			t.Fatalf("after %d keys the map holds %d buckets, want at most %d", i+1, len(l.clients), l.max)
		}
	}
	// Every bucket but one is back to full a few seconds later; the one in
	// use (emptied now) must survive the next evictions.
	l = newLimiter(1, 3)
	l.max = 10
	for i := range 10 {
		l.allow(fmt.Sprintf("idle%d", i), now)
	}
	delete(l.clients, "idle0")
	for range 3 {
		l.allow("busy", now.Add(5*time.Second))
	}
	later := now.Add(5 * time.Second)
	for i := range 5 {
		l.allow(fmt.Sprintf("new%d", i), later)
	}
	if _, ok := l.clients["busy"]; !ok {
		t.Fatal("the bucket in use was evicted while full ones were there")
	}
	if ok, _ := l.allow("busy", later); ok {
		t.Fatal("the busy client got a token back through eviction")
	}
}
