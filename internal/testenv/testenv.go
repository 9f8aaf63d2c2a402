// Package testenv gives integration tests their real servers. The Makefile
// (through deploy/stack.sh) starts MariaDB, RabbitMQ, FerretDB and Mailpit
// and exports where they are; with MP3_STACK=1 a missing variable fails the
// test, otherwise (a bare `go test`) it skips with a hint.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// Getenv returns the variable, or skips (no stack) / fails (stack promised).
func Getenv(t testing.TB, name string) string {
	t.Helper()
	v, ok := os.LookupEnv(name)
	if ok {
		return v
	}
	if os.Getenv("MP3_STACK") == "1" {
		t.Fatalf("%s is not set although MP3_STACK=1: run the tests with `make test`", name)
	}
	t.Skipf("%s is not set: integration test needs the local stack (run `make test`)", name)
	return ""
}

// Name returns prefix plus a random suffix, for databases, queues and buckets
// private to one test.
func Name(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(prefix) + "_" + hex.EncodeToString(b[:])
}
