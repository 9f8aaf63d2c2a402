package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"mp3converter/internal/jobs"
	"mp3converter/internal/testenv"
	"mp3converter/internal/token"
)

// sse is one client's GET /events, read event by event.
type sse struct {
	t      *testing.T
	resp   *http.Response
	cancel context.CancelFunc
	lines  chan string
}

type sseEvent struct{ name, data string }

func (e *env) openEvents(t *testing.T, tok string) (*sse, result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/events", nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		defer cancel()
		defer resp.Body.Close()
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		return nil, result{status: resp.StatusCode, body: b.String(), header: resp.Header}
	}
	s := &sse{t: t, resp: resp, cancel: cancel, lines: make(chan string, 256)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(s.close)
	return s, result{status: 200, header: resp.Header}
}

func (s *sse) close() { s.cancel(); s.resp.Body.Close() }

// next returns the next event (comments skipped); ok false when the stream
// ended. No event within a minute fails the test.
func (s *sse) next() (ev sseEvent, ok bool) {
	s.t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case line, open := <-s.lines:
			switch {
			case !open:
				return sseEvent{}, false
			case line == "" && (ev.name != "" || ev.data != ""):
				return ev, true
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		case <-timeout:
			s.t.Fatal("no event for a minute")
		}
	}
}

// nextJob skips to the next job event and decodes it.
func (s *sse) nextJob() map[string]any {
	s.t.Helper()
	for {
		ev, ok := s.next()
		if !ok {
			s.t.Fatal("the stream ended before a job event")
		}
		if ev.name != "job" {
			continue
		}
		var j map[string]any
		if err := json.Unmarshal([]byte(ev.data), &j); err != nil {
			s.t.Fatalf("job event %q: %v", ev.data, err)
		}
		return j
	}
}

// The stream carries the caller's job changes as the services write them
// (queued, converting with progress, done, failed), and only theirs.
func TestEventsStreamTheCallersJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	alice, bob := e.token(t, "alice@example.com", false), e.token(t, "bob@example.com", false)
	if _, r := e.openEvents(t, ""); r.status != 401 {
		t.Fatalf("GET /events without a token: %d %q", r.status, r.body)
	}
	as, r := e.openEvents(t, alice)
	if ct := r.header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	bs, _ := e.openEvents(t, bob)

	video := part{field: "file", filename: "a.mp4", ctype: "video/mp4", body: []byte("video")}
	if r := e.upload(t, alice, video); r.status != 200 {
		t.Fatalf("upload: %d %q", r.status, r.body)
	}
	j := as.nextJob()
	id, _ := j["id"].(string)
	if j["status"] != "queued" || id == "" || j["filename"] != "a.mp4" {
		t.Fatalf("first event %v, want the queued job", j)
	}
	if _, leaked := j["username"]; leaked {
		t.Errorf("the event names the user: %v", j)
	}
	// The converter's writes, as it makes them.
	ctx := context.Background()
	if err := e.jobs.Progress(ctx, id, 40); err != nil {
		t.Fatal(err)
	}
	if j := as.nextJob(); j["status"] != "converting" || j["progress"] != 40.0 {
		t.Fatalf("after progress: %v", j)
	}
	if err := e.jobs.Done(ctx, id, id); err != nil {
		t.Fatal(err)
	}
	if j := as.nextJob(); j["status"] != "done" || j["mp3_fid"] != id || j["progress"] != 100.0 {
		t.Fatalf("after done: %v", j)
	}
	// Bob's stream saw none of it: his first job event is his own upload.
	if r := e.upload(t, bob, video); r.status != 200 {
		t.Fatalf("bob's upload: %d", r.status)
	}
	if j := bs.nextJob(); j["id"] == id || j["status"] != "queued" {
		t.Fatalf("bob's first event %v: alice's job leaked", j)
	}
	e.drain(t)
}

// Streams are bounded per user, end when the token expires (saying so),
// when the gateway shuts down, and say "resync" when the gateway may have
// missed changes (its broker connection broke).
func TestEventsStreamLifetime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	alice := e.token(t, "alice@example.com", false)
	var streams []*sse
	for range 5 {
		s, r := e.openEvents(t, alice)
		if r.status != 200 {
			t.Fatalf("stream %d: %d %q", len(streams)+1, r.status, r.body)
		}
		streams = append(streams, s)
	}
	if _, r := e.openEvents(t, alice); r.status != 429 || !strings.Contains(r.body, "5 live update streams") || r.header.Get("Retry-After") == "" {
		t.Fatalf("a sixth stream: %d %q", r.status, r.body)
	}
	streams[0].close()
	testenv.Eventually(t, 20*time.Second, "a stream closed makes room", func() bool {
		s, r := e.openEvents(t, alice)
		if r.status == 200 {
			streams[0] = s
		}
		return r.status == 200
	})

	// A token about to expire: the stream says so, then ends.
	short, err := token.New("gateway-test-secret", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := short.Issue("carol@example.com", false)
	cs, r := e.openEvents(t, tok)
	if r.status != 200 {
		t.Fatalf("stream with a short token: %d %q", r.status, r.body)
	}
	if ev, ok := cs.next(); !ok || ev.name != "expired" {
		t.Fatalf("at the token's expiry: %+v (open %v), want an expired event", ev, ok)
	}
	if _, ok := cs.next(); ok {
		t.Fatal("the stream goes on after the token expired")
	}

	// The broker connection breaks: the listener binds again and every
	// stream is told to read the list again.
	e.mqProxy.Down()
	e.mqProxy.Up()
	for i, s := range streams {
		if ev, ok := s.next(); !ok || ev.name != "resync" {
			t.Fatalf("stream %d after the broker came back: %+v (open %v), want resync", i, ev, ok)
		}
	}
	// ... and events flow again.
	testenv.Eventually(t, 20*time.Second, "events after the broker came back", func() bool {
		return e.upload(t, alice, part{field: "file", filename: "b.mp4", ctype: "video/mp4", body: []byte("v")}).status == 200
	})
	if j := streams[1].nextJob(); j["status"] != string(jobs.Queued) {
		t.Fatalf("after the outage: %v", j)
	}

	// Shutdown ends the streams (the server waits for its handlers).
	e.srv.CloseStreams()
	for i, s := range streams {
		for {
			ev, ok := s.next()
			if !ok {
				break
			}
			if ev.name == "job" {
				continue
			}
			t.Fatalf("stream %d at shutdown: %+v", i, ev)
		}
	}
	if _, r := e.openEvents(t, alice); r.status != 503 {
		t.Fatalf("a stream during shutdown: %d %q", r.status, r.body)
	}
	e.drain(t)
}
