package gateway_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mp3converter/internal/authclient"
	"mp3converter/internal/gateway"
	"mp3converter/internal/httpx"
)

// These tests put a stand-in for the auth service behind a gateway whose
// stores are absent: every request here is answered before a store is
// needed (a store call would panic and fail the test).

// fakeAuth answers every request with status and body and counts them.
type fakeAuth struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newFakeAuth(t *testing.T, status int, body string) *fakeAuth {
	t.Helper()
	f := &fakeAuth{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAuth) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// gatewayBefore returns the URL of a gateway that asks auth at authAddr.
func gatewayBefore(t *testing.T, authAddr string) string {
	t.Helper()
	authc, err := authclient.New(authAddr, time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(recordStatuses(gateway.NewServer(gateway.Deps{
		Auth: authc, Ops: httpx.NewOps(httpx.NewRegistry()), Log: slog.New(slog.DiscardHandler),
	}, gateway.Options{
		VideoQueue: "video", MaxUploadBytes: 1 << 20, UploadTimeout: 5 * time.Second,
		PublishTimeout: time.Second, RequestTimeout: 5 * time.Second,
	})))
	t.Cleanup(gw.Close)
	return gw.URL
}

var protectedRoutes = []struct{ method, path string }{
	{"POST", "/upload"}, {"GET", "/download?fid=65a1b2c3d4e5f60718293a4b"}, {"GET", "/jobs"}, {"GET", "/jobs/65a1b2c3d4e5f60718293a4b"},
}

// The original auth crashes with 500 on "Authorization: Bearer" without a
// token: the gateway refuses a missing or empty token itself, with the
// contract's 401, and never sends such a request to auth.
func TestMissingTokenIsRefusedBeforeAuth(t *testing.T) {
	t.Parallel()
	orig := newFakeAuth(t, http.StatusInternalServerError, "<h1>Internal Server Error</h1>")
	url := gatewayBefore(t, orig.addr())
	for _, rt := range protectedRoutes {
		for _, authz := range []string{"", "Bearer", "Bearer ", "Bearer    ", "bearer", "Basic eDp5", "Token abc"} {
			t.Run(fmt.Sprintf("%s %s %q", rt.method, rt.path, authz), func(t *testing.T) {
				r := request(t, rt.method, url+rt.path, authz, "", nil)
				if r.status != 401 || r.body != "missing credentials" {
					t.Fatalf("%d %q, want 401 \"missing credentials\"", r.status, r.body)
				}
			})
		}
	}
	if n := orig.hits.Load(); n != 0 {
		t.Fatalf("auth was asked %d times without a token", n)
	}
}

// A 5xx from auth stays a 5xx, and the body says which: unreachable, slow or
// 503 is "unavailable" (503); any other 5xx is auth's own failure (502,
// with its status). Auth's 4xx pass through unchanged; auth's own 5xx body
// never reaches the client.
func TestAuthFailuresAtTheGateway(t *testing.T) {
	t.Parallel()
	const unavailable = "auth service unavailable, try again later"
	for _, tc := range []struct {
		name, addr string
		status     int // the gateway's, on the protected routes and /login alike
		body       string
	}{
		{"auth answers 500", newFakeAuth(t, 500, "Traceback (most recent call last)").addr(), 502, "auth service error (it answered 500)"},
		{"auth answers 502", newFakeAuth(t, 502, "bad gateway").addr(), 502, "auth service error (it answered 502)"},
		{"auth answers 504", newFakeAuth(t, 504, "").addr(), 502, "auth service error (it answered 504)"},
		{"auth answers 503", newFakeAuth(t, 503, "service unavailable").addr(), 503, unavailable},
		{"auth is down", closedAddr(t), 503, unavailable},
		{"auth refuses the token", newFakeAuth(t, 403, "not authorized").addr(), 403, "not authorized"},
		{"auth refuses the credentials", newFakeAuth(t, 401, "invalid credentials").addr(), 401, "invalid credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := gatewayBefore(t, tc.addr)
			for _, rt := range protectedRoutes {
				r := request(t, rt.method, url+rt.path, "Bearer some.jwt.token", "", nil)
				if r.status != tc.status || r.body != tc.body {
					t.Errorf("%s %s: %d %q, want %d %q", rt.method, rt.path, r.status, r.body, tc.status, tc.body)
				}
			}
			r := request(t, "POST", url+"/login", basic("alice@example.com", "pw"), "", nil)
			if r.status != tc.status || r.body != tc.body {
				t.Errorf("POST /login: %d %q, want %d %q", r.status, r.body, tc.status, tc.body)
			}
		})
	}
}
