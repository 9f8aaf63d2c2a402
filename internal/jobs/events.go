package jobs

import (
	"context"
	"encoding/json"
	"log/slog"
)

// EventsExchange is the RabbitMQ fanout exchange that carries job events:
// every change a Store with OnChange writes is announced there, so that
// the gateways can push it to the page (GET /events) instead of the page
// polling. Events are hints, at most once: a reader that missed some (its
// connection broke) reads the jobs again.
const EventsExchange = "mp3converter.job-events"

// Event says that job ID changed: its new Status (and Progress while
// converting). Username is set when the writer knew it (Create); a reader
// that needs the job reads it.
type Event struct {
	ID       string `json:"id"`
	Username string `json:"username,omitempty"`
	Status   Status `json:"status"`
	Progress int    `json:"progress"`
}

// Encode is the event's JSON.
func (e Event) Encode() []byte {
	b, _ := json.Marshal(e)
	return b
}

// DecodeEvent parses an event; one without an id is an error.
func DecodeEvent(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, err
	}
	if e.ID == "" {
		return Event{}, errNoID
	}
	return e, nil
}

// OnChange makes s call announce after each change it writes (a job
// created, converting with its progress, done, failed, withdrawn). announce
// must not block: it runs in the writer's path.
func (s *Store) OnChange(announce func(context.Context, Event)) { s.announce = announce }

// AnnounceOn makes s announce every change it writes on EventsExchange
// through announce (mq.Conn.Announce, which never waits for a broker); an
// announcement that fails is only logged: the readers make up for lost
// ones.
func (s *Store) AnnounceOn(announce func(ctx context.Context, exchange string, body []byte) error, log *slog.Logger) {
	s.OnChange(func(ctx context.Context, e Event) {
		if err := announce(ctx, EventsExchange, e.Encode()); err != nil {
			log.Debug("job event not announced", "job_id", e.ID, "err", err)
		}
	})
}

func (s *Store) changed(ctx context.Context, e Event) {
	if s.announce != nil {
		s.announce(ctx, e)
	}
}
