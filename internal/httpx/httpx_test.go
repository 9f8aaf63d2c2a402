package httpx

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"mp3converter/internal/testenv"
)

var errGone = errors.New("gone")

func TestResponder(t *testing.T) {
	rs := Responder{Rules: []ErrorRule{{Err: errGone, Status: 404, Body: "not found"}}}
	for _, tc := range []struct {
		name   string
		err    error
		status int
		body   string
	}{
		{"status error", Status(400, "fid is required"), 400, "fid is required"},
		{"wrapped rule", errors.Join(errors.New("ctx"), errGone), 404, "not found"},
		{"internal error text is hidden", errors.New("dial tcp 10.1.2.3: secret detail"), 500, "internal server error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			rs.Error(w, httptest.NewRequest("GET", "/", nil), tc.err)
			if w.Code != tc.status || w.Body.String() != tc.body {
				t.Fatalf("got %d %q, want %d %q", w.Code, w.Body.String(), tc.status, tc.body)
			}
		})
	}
}

func TestMiddlewareRequestIDAndPanic(t *testing.T) {
	r := chi.NewRouter()
	r.Use(Middleware(slog.New(slog.DiscardHandler), nil, time.Second))
	r.Get("/id", func(w http.ResponseWriter, r *http.Request) { Text(w, 200, RequestID(r.Context())) })
	r.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	r.Get("/deadline", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Context().Deadline(); !ok {
			Text(w, 500, "no deadline")
			return
		}
		Text(w, 200, "ok")
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	get := func(path, id string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if id != "" {
			req.Header.Set(RequestIDHeader, id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get("/id", "abc-123"); body != "abc-123" || resp.Header.Get(RequestIDHeader) != "abc-123" {
		t.Fatalf("kept id: %q %q", body, resp.Header.Get(RequestIDHeader))
	}
	if _, body := get("/id", "bad id with spaces"); len(body) != 16 {
		t.Fatalf("invalid id not replaced: %q", body)
	}
	if resp, body := get("/panic", ""); resp.StatusCode != 500 || body != "internal server error" {
		t.Fatalf("panic: %d %q", resp.StatusCode, body)
	}
	if resp, body := get("/deadline", ""); resp.StatusCode != 200 {
		t.Fatalf("deadline: %d %q", resp.StatusCode, body)
	}
}

func TestReadyz(t *testing.T) {
	ops := NewOps(NewRegistry())
	ops.AddCheck("good", func(context.Context) error { return nil })
	bad := true
	ops.AddCheck("flaky", func(context.Context) error {
		if bad {
			return errors.New("down")
		}
		return nil
	})
	var logs testenv.Buffer
	srv := httptest.NewServer(OpsHandler(ops, slog.New(slog.NewTextHandler(&logs, nil))))
	defer srv.Close()
	check := func(want int, wantBody string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || !strings.Contains(string(b), wantBody) {
			t.Fatalf("readyz = %d %s, want %d with %s", resp.StatusCode, b, want, wantBody)
		}
	}
	check(503, `"flaky":"unavailable"`)
	check(503, `"flaky":"unavailable"`)
	check(503, `"flaky":"unavailable"`)
	bad = false
	check(200, `"ready":true`)
	check(200, `"ready":true`)

	// A probe every few seconds must not flood the log: one warning when a
	// check starts failing, one line when it recovers.
	out := logs.String()
	lines := func(parts ...string) (n int) {
	next:
		for l := range strings.Lines(out) {
			for _, p := range parts {
				if !strings.Contains(l, p) {
					continue next
				}
			}
			n++
		}
		return n
	}
	if n := lines("level=WARN", `msg="readiness check failed"`, "check=flaky", "err=down"); n != 1 {
		t.Errorf("%d failure warnings for 3 failing probes, want 1:\n%s", n, out)
	}
	if n := lines("level=INFO", `msg="readiness check recovered"`, "check=flaky"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, out)
	}
	if strings.Contains(out, "check=good") {
		t.Errorf("a check that never failed was logged:\n%s", out)
	}
}

// Serve returns after ctx is cancelled, letting an in-flight request finish.
func TestServeGracefulShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release // in flight until the shutdown has begun
		Text(w, 200, "finished")
	})
	srv, err := Listen("127.0.0.1:0", h, ServerConfig{ShutdownTimeout: 5 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + srv.Addr())
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	cancel()
	// The shutdown has begun once the listener is closed: new connections
	// are refused while the request above is still in flight.
	testenv.Eventually(t, 10*time.Second, "the server to stop accepting connections", func() bool {
		c, err := net.Dial("tcp", srv.Addr())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if body := <-got; body != "finished" {
		t.Fatalf("in-flight request got %q", body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
