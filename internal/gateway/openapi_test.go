package gateway_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"

	"mp3converter/internal/gateway"
)

// TestMain runs the tests, then checks that every status the gateways of
// newEnv answered is in openapi.json for its route (see recordStatuses).
func TestMain(m *testing.M) {
	code := m.Run()
	if testing.Verbose() {
		fmt.Println(served.summary())
	}
	if missing, err := served.undocumented(); err != nil {
		fmt.Fprintln(os.Stderr, "openapi.json:", err)
		code = 1
	} else if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the gateway answered these in the tests, and openapi.json does not document them:\n\t%s\n",
			strings.Join(missing, "\n\t"))
		code = 1
	}
	os.Exit(code)
}

// served is what the tests' gateways answered: route pattern, method and
// status.
var served = &statusLog{seen: map[statusKey]int{}}

type statusKey struct {
	method, pattern string
	status          int
}

type statusLog struct {
	mu   sync.Mutex
	seen map[statusKey]int // how many times
}

func (l *statusLog) add(k statusKey) {
	l.mu.Lock()
	l.seen[k]++
	l.mu.Unlock()
}

func (l *statusLog) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var seen []string
	for k, n := range l.seen {
		seen = append(seen, fmt.Sprintf("%s %s → %d ×%d", k.method, cmp.Or(k.pattern, "(no route)"), k.status, n))
	}
	slices.Sort(seen)
	return fmt.Sprintf("openapi.json checked against %d kinds of answer:\n\t%s", len(seen), strings.Join(seen, "\n\t"))
}

// undocumented lists what was answered on a route and is not documented
// for it. A request no route matched (no pattern) may only get chi's 404
// or 405, which the document names once, in its description.
func (l *statusLog) undocumented() ([]string, error) {
	ops, err := gateway.DocumentedOps()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var missing []string
	for k, n := range l.seen {
		if k.pattern == "" {
			if k.status != http.StatusNotFound && k.status != http.StatusMethodNotAllowed {
				missing = append(missing, fmt.Sprintf("%s (no route) → %d (%d times), want 404 or 405", k.method, k.status, n))
			}
			continue
		}
		op := k.method + " " + k.pattern
		if !ops[op][k.status] {
			missing = append(missing, fmt.Sprintf("%s → %d (%d times)", op, k.status, n))
		}
	}
	slices.Sort(missing)
	return missing, nil
}

// recordStatuses wraps a gateway so that each answer is noted in served
// with the chi route that served it. The route context is made here, so
// that the gateway's router fills it in (chi uses a parent's) and it can
// be read after serving.
func recordStatuses(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rctx := chi.NewRouteContext()
		r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
		sw := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		served.add(statusKey{method: r.Method, pattern: rctx.RoutePattern(), status: sw.status()})
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach deadlines and Flush.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
