package authclient_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"mp3converter/internal/auth"
	"mp3converter/internal/authclient"
	"mp3converter/internal/httpx"
	"mp3converter/internal/token"
)

// The real auth handler answers validation (it needs no database for that).
func realAuth(t *testing.T) (*authclient.Client, *token.Issuer) {
	t.Helper()
	tokens, _ := token.New("s3cret", time.Hour)
	log := slog.New(slog.DiscardHandler)
	a, err := auth.NewAuthenticator(nil, tokens, 4, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(auth.NewServer(a, tokens, httpx.NewOps(httpx.NewRegistry()), log,
		auth.ServerOptions{RequestTimeout: time.Second, LoginRate: 10, LoginBurst: 10}))
	t.Cleanup(srv.Close)
	c, err := authclient.New(strings.TrimPrefix(srv.URL, "http://"), 2*time.Second, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, tokens
}

func TestValidate(t *testing.T) {
	c, tokens := realAuth(t)
	good, _ := tokens.Issue("me@example.com", true)
	for _, tc := range []struct {
		name, authz string
		status      int
		body        string
	}{
		{"valid", "Bearer " + good, 200, ""},
		{"none", "", 401, "missing credentials"},
		{"basic", "Basic eDp5", 401, "missing credentials"},
		{"garbage", "Bearer nope", 403, "not authorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := c.Validate(context.Background(), tc.authz)
			if tc.status == 200 {
				if err != nil || claims.Username != "me@example.com" || !claims.Admin {
					t.Fatalf("Validate = %+v, %v", claims, err)
				}
				return
			}
			var se *httpx.StatusError
			if !errors.As(err, &se) || se.Status != tc.status || se.Body != tc.body {
				t.Fatalf("Validate err = %v, want %d %q", err, tc.status, tc.body)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", 500)
	}))
	defer broken.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()

	for name, addr := range map[string]string{
		"slow": strings.TrimPrefix(slow.URL, "http://"), "5xx": strings.TrimPrefix(broken.URL, "http://"), "down": closed,
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := authclient.New(addr, 300*time.Millisecond, 300*time.Millisecond)
			if _, err := c.Validate(context.Background(), "Bearer x"); !errors.Is(err, authclient.ErrUnavailable) {
				t.Fatalf("Validate err = %v, want ErrUnavailable", err)
			}
			if _, err := c.Login(context.Background(), "Basic eDp5", "10.0.0.1"); !errors.Is(err, authclient.ErrUnavailable) {
				t.Fatalf("Login err = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestNewRejectsURL(t *testing.T) {
	if _, err := authclient.New("http://auth:5000/", time.Second, time.Second); err == nil {
		t.Fatal("New accepted a URL; AUTH_SVC_ADDRESS is host:port")
	}
}
