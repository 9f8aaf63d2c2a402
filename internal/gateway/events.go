package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"mp3converter/internal/httpx"
	"mp3converter/internal/jobs"
	"mp3converter/internal/logging"
)

// Live job updates: GET /events is a server-sent events stream of the
// caller's job changes. The services announce every change they write on a
// fanout exchange (jobs.Store.OnChange → jobs.EventsExchange); each gateway
// listens with a queue of its own (mq.Conn.Listen) and hands each change to
// the streams of the job's owner, reading the job once per change when
// somebody listens, never per client or on a timer.
//
// The stream's events:
//
//	event: job      data: the job, as GET /jobs/{id} answers it
//	event: resync   data: {}  — changes may have been missed (the gateway's
//	                            broker connection broke, or the stream fell
//	                            behind): read GET /jobs again
//	event: expired  data: {}  — the token expired: the stream ends; log in
//
// and a comment line every EventsHeartbeat, so that proxies keep it open.

// Limits of the streams.
const (
	// maxStreamsPerUser is how many streams one user may have open at once
	// on one gateway (tabs, devices); more get 429.
	maxStreamsPerUser = 5
	// maxStreams bounds them all on one gateway.
	maxStreams = 10000
	// streamBuffer is how many events a stream may fall behind before it
	// is told to resync instead.
	streamBuffer = 64
	// eventsHeartbeat is the time between two comment lines.
	eventsHeartbeat = 25 * time.Second
	// eventWriteTimeout drops a client that takes no bytes for this long.
	eventWriteTimeout = 30 * time.Second
)

// hub is the open streams of one gateway, by user.
type hub struct {
	mu      sync.Mutex
	streams map[string]map[*stream]struct{}
	n       int
	closed  bool
}

// stream is one client's: its pending events, and whether it fell behind.
type stream struct {
	user   string
	events chan []byte // encoded job
	resync chan struct{}
	done   chan struct{} // closed when the gateway shuts down
}

func newHub() *hub { return &hub{streams: map[string]map[*stream]struct{}{}} }

func (h *hub) add(user string) (*stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, httpx.Status(http.StatusServiceUnavailable, "the gateway is shutting down, try again later")
	}
	if len(h.streams[user]) >= maxStreamsPerUser || h.n >= maxStreams {
		return nil, &httpx.StatusError{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"60"}},
			Body: fmt.Sprintf("you have %d live update streams open, the most at once: close a tab, or reload the list instead", len(h.streams[user]))}
	}
	st := &stream{user: user, events: make(chan []byte, streamBuffer), resync: make(chan struct{}, 1), done: make(chan struct{})}
	if h.streams[user] == nil {
		h.streams[user] = map[*stream]struct{}{}
	}
	h.streams[user][st] = struct{}{}
	h.n++
	return st, nil
}

func (h *hub) remove(st *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.streams[st.user][st]; !ok {
		return
	}
	delete(h.streams[st.user], st)
	if len(h.streams[st.user]) == 0 {
		delete(h.streams, st.user)
	}
	h.n--
}

// listening reports whether any stream is open.
func (h *hub) listening() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n > 0
}

// send hands an encoded job to user's streams; one that is full is told
// to resync instead (its client reads the list again).
func (h *hub) send(user string, body []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for st := range h.streams[user] {
		select {
		case st.events <- body:
		default:
			st.tellResync()
		}
	}
}

// resyncAll tells every stream that changes may have been missed.
func (h *hub) resyncAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, streams := range h.streams {
		for st := range streams {
			st.tellResync()
		}
	}
}

func (st *stream) tellResync() {
	select {
	case st.resync <- struct{}{}:
	default:
	}
}

// close ends every stream and refuses new ones: the server is shutting
// down, and it waits for its handlers.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for _, streams := range h.streams {
		for st := range streams {
			close(st.done)
		}
	}
}

// onJobEvent hands an announced change to its owner's streams.
func (s *Server) onJobEvent(ctx context.Context, body []byte) {
	if !s.hub.listening() {
		return
	}
	e, err := jobs.DecodeEvent(body)
	if err != nil {
		logging.From(ctx).Debug("job event dropped", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	j, err := s.Jobs.Get(ctx, e.ID)
	if err != nil || j.Status == jobs.Withdrawn {
		return // deleted meanwhile, or a withdrawn upload's tombstone
	}
	b, err := json.Marshal(j)
	if err != nil {
		return
	}
	s.hub.send(j.Username, b)
}

// ListenForJobs feeds the streams from the broker until ctx ends.
func (s *Server) ListenForJobs(ctx context.Context, listen func(ctx context.Context, exchange string, h func([]byte), onGap func()) error) error {
	return listen(ctx, jobs.EventsExchange, func(b []byte) { s.onJobEvent(ctx, b) }, s.hub.resyncAll)
}

// CloseStreams ends the open event streams (at shutdown).
func (s *Server) CloseStreams() { s.hub.close() }

// events serves GET /events.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	claims := claimsFrom(r.Context())
	st, err := s.hub.add(claims.Username)
	if err != nil {
		responder.Error(w, r, err)
		return
	}
	defer s.hub.remove(st)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not hold the stream back
	w.WriteHeader(http.StatusOK)
	write := func(text string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if _, err := w.Write([]byte(text)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// retry: how long an EventSource waits before it reconnects.
	if !write("retry: 5000\n: live job updates\n\n") {
		return
	}
	expiry := time.Until(time.Unix(claims.Exp, 0))
	if claims.Exp == 0 {
		expiry = 24 * time.Hour
	}
	expired := time.NewTimer(max(expiry, 0))
	defer expired.Stop()
	beat := time.NewTicker(eventsHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-st.done:
			return
		case <-expired.C:
			write("event: expired\ndata: {}\n\n")
			return
		case <-st.resync:
			if !write("event: resync\ndata: {}\n\n") {
				return
			}
		case b := <-st.events:
			if !write("event: job\ndata: " + string(b) + "\n\n") {
				return
			}
		case <-beat.C:
			if !write(": ping\n\n") {
				return
			}
		}
	}
}
