package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"mp3converter/internal/httpx"
)

func TestMainWith(t *testing.T) {
	var out bytes.Buffer
	called := false
	run := func(_ context.Context, args []string, _ io.Reader, _ io.Writer) error {
		called = true
		if strings.Join(args, " ") != "user add" {
			t.Errorf("args %q", args)
		}
		return nil
	}
	if err := mainWith(context.Background(), "x", "v1.2", []string{"-version"}, nil, &out, run); err != nil || out.String() != "v1.2\n" || called {
		t.Fatalf("-version: %v %q called=%v", err, out.String(), called)
	}
	if err := mainWith(context.Background(), "x", "v", []string{"user", "add"}, nil, &out, run); err != nil || !called {
		t.Fatalf("commands: %v called=%v", err, called)
	}
	if err := mainWith(context.Background(), "x", "v", []string{"-nope"}, nil, &out, run); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

// The intake stops first and the ops server keeps answering while it
// drains; a part that fails stops the rest.
func TestServeShutdownOrder(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ops, err := httpx.Listen("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(200)
	}), httpx.ServerConfig{ShutdownTimeout: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	drained := make(chan bool, 1)
	intake := func(ctx context.Context) error {
		<-ctx.Done()
		// Draining: the ops server must still answer.
		resp, err := http.Get("http://" + ops.Addr() + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		drained <- err == nil
		return nil
	}
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, log, nil, ops, intake) }()
	cancel() // the listener is open: a request waits for Serve to accept it
	if !<-drained {
		t.Error("the ops server did not answer while the intake drained")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}

	boom := errors.New("consumer failed")
	stopped := make(chan struct{})
	err = Serve(context.Background(), log, nil, nil,
		func(context.Context) error { return boom },
		func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })
	if !errors.Is(err, boom) {
		t.Fatalf("Serve = %v, want the failing part's error", err)
	}
	<-stopped
}

// Servers opened on port 0 report where they listen, once they serve.
func TestServeReportsAddrs(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	open := func() *httpx.Server {
		s, err := httpx.Listen("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusTeapot)
		}), httpx.ServerConfig{ShutdownTimeout: time.Second}, log)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	public, ops := open(), open()
	addrs := make(chan Addrs, 1)
	ctx, cancel := context.WithCancel(WithStarted(context.Background(), func(a Addrs) { addrs <- a }))
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, log, public, ops) }()
	a := <-addrs
	if a.Public != public.Addr() || a.Ops != ops.Addr() || strings.HasSuffix(a.Public, ":0") {
		t.Fatalf("started with %+v, want %s and %s", a, public.Addr(), ops.Addr())
	}
	for _, addr := range []string{a.Public, a.Ops} {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil || resp.StatusCode != http.StatusTeapot {
			t.Fatalf("GET %s: %v %v", addr, resp, err)
		}
		resp.Body.Close()
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
