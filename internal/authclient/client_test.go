package authclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
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
	a, err := auth.NewAuthenticator(nil, tokens, auth.PasswordOptions{Cost: 4}, log)
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
		select { // scenario, not evidence: auth hangs until the client gives up (5 s at most)
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	overloaded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "service unavailable", 503)
	}))
	defer overloaded.Close()

	for name, addr := range map[string]string{
		"slow": strings.TrimPrefix(slow.URL, "http://"), "503": strings.TrimPrefix(overloaded.URL, "http://"), "down": closedAddr(t),
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

// closedAddr is a host:port where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// peer is a stand-in for an auth service: it answers every request with
// status and body, and records the Authorization headers it was sent.
type peer struct {
	srv   *httptest.Server
	mu    sync.Mutex
	authz []string
}

func newPeer(t *testing.T, status int, body string) *peer {
	t.Helper()
	p := &peer{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.authz = append(p.authz, r.Header.Get("Authorization"))
		p.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *peer) addr() string { return strings.TrimPrefix(p.srv.URL, "http://") }

func (p *peer) received() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.authz...)
}

// The original auth crashes (500) on "Bearer" without a token: a missing
// or empty token is refused before auth is asked, and auth is always sent
// "Bearer <token>" with exactly one space.
func TestValidateAsksAuthOnlyWithAToken(t *testing.T) {
	p := newPeer(t, http.StatusInternalServerError, "<h1>Internal Server Error</h1>")
	c, err := authclient.New(p.addr(), time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"", "Bearer", "Bearer ", "Bearer    ", "Basic eDp5", "Token abc"} {
		t.Run(fmt.Sprintf("%q", h), func(t *testing.T) {
			_, err := c.Validate(context.Background(), h)
			var se *httpx.StatusError
			if !errors.As(err, &se) || se.Status != 401 || se.Body != "missing credentials" {
				t.Fatalf("Validate(%q) err = %v, want 401 missing credentials", h, err)
			}
		})
	}
	if got := p.received(); len(got) != 0 {
		t.Fatalf("auth was asked %d times without a token: %q", len(got), got)
	}
	c.Validate(context.Background(), "bearer   abc  ")
	if got := p.received(); len(got) != 1 || got[0] != "Bearer abc" {
		t.Fatalf("auth was sent %q, want [\"Bearer abc\"]", got)
	}
}

// A 503 from auth, like no answer at all, is ErrUnavailable; any other 5xx
// is ErrFailed with auth's status; auth's 401 and 403 pass through.
func TestAuthAnswers(t *testing.T) {
	for _, tc := range []struct {
		status      int
		unavailable bool
		failed      bool
	}{
		{500, false, true},
		{501, false, true},
		{502, false, true},
		{503, true, false},
		{504, false, true},
		{401, false, false},
		{403, false, false},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			p := newPeer(t, tc.status, "auth's own words")
			c, err := authclient.New(p.addr(), time.Second, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, verr := c.Validate(context.Background(), "Bearer x")
			resp, lerr := c.Login(context.Background(), "Basic eDp5", "10.0.0.1")
			for op, err := range map[string]error{"Validate": verr, "Login": lerr} {
				if got := errors.Is(err, authclient.ErrUnavailable); got != tc.unavailable {
					t.Errorf("%s: errors.Is(%v, ErrUnavailable) = %v, want %v", op, err, got, tc.unavailable)
				}
				if got := errors.Is(err, authclient.ErrFailed); got != tc.failed {
					t.Errorf("%s: errors.Is(%v, ErrFailed) = %v, want %v", op, err, got, tc.failed)
				}
				var fe *authclient.FailedError
				if tc.failed && (!errors.As(err, &fe) || fe.Status != tc.status) {
					t.Errorf("%s: err %v does not carry status %d", op, err, tc.status)
				}
			}
			if tc.status < 500 {
				var se *httpx.StatusError
				if !errors.As(verr, &se) || se.Status != tc.status || se.Body != "auth's own words" {
					t.Errorf("Validate err = %v, want auth's %d passed through", verr, tc.status)
				}
				if lerr != nil || resp.Status != tc.status || string(resp.Body) != "auth's own words" {
					t.Errorf("Login = %+v, %v, want auth's %d passed through", resp, lerr, tc.status)
				}
			}
		})
	}
}

// Ready needs an answer from auth, not a particular one: the original auth
// has no /healthz and answers 404. No answer, or a 5xx, is not ready.
func TestReady(t *testing.T) {
	goAuth, _ := realAuth(t)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	client := func(addr string) *authclient.Client {
		c, err := authclient.New(addr, time.Second, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	flask404 := `<!doctype html><title>404 Not Found</title><h1>Not Found</h1>`
	for _, tc := range []struct {
		name  string
		c     *authclient.Client
		ready bool
	}{
		{"go auth", goAuth, true},
		{"original auth (no /healthz, 404)", client(newPeer(t, 404, flask404).addr()), true},
		{"405", client(newPeer(t, 405, "").addr()), true},
		{"401", client(newPeer(t, 401, "").addr()), true},
		{"500", client(newPeer(t, 500, "").addr()), false},
		{"502", client(newPeer(t, 502, "").addr()), false},
		{"503", client(newPeer(t, 503, "").addr()), false},
		{"closed port", client(closedAddr(t)), false},
		{"no answer in time", client(strings.TrimPrefix(hang.URL, "http://")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err := tc.c.Ready(ctx)
			if tc.ready && err != nil {
				t.Fatalf("Ready = %v, want ready", err)
			}
			if !tc.ready && !errors.Is(err, authclient.ErrUnavailable) {
				t.Fatalf("Ready = %v, want ErrUnavailable", err)
			}
		})
	}
}
