package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"mp3converter/internal/logging"
)

// StatusError is an error with the status and the plain-text body a client
// may see. Handlers return it for client errors; anything else is a 500.
type StatusError struct {
	Status int
	Body   string
	Header http.Header // optional extra headers (e.g. Retry-After)
	Err    error       // optional cause, logged, never shown
}

func (e *StatusError) Error() string {
	if e.Err != nil {
		return e.Body + ": " + e.Err.Error()
	}
	return e.Body
}

func (e *StatusError) Unwrap() error { return e.Err }

// Errorf-free constructor for the common case.
func Status(status int, body string) *StatusError { return &StatusError{Status: status, Body: body} }

// ErrorRule maps a sentinel error to what the client sees.
type ErrorRule struct {
	Err    error
	Status int
	Body   string
}

// Responder turns errors into responses: first a StatusError, then the rules
// (checked with errors.Is, in order), else 500 with a safe body. Every 5xx is
// logged with its cause; the client never sees internal error text.
type Responder struct {
	Rules []ErrorRule
}

// Error writes err as a response.
func (rs Responder) Error(w http.ResponseWriter, r *http.Request, err error) {
	status, body, header := rs.Resolve(r.Context(), err)
	for k, vs := range header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	Text(w, status, body)
}

// Resolve is what Error answers for err: its status, body and extra
// headers, for a handler that writes its own responses (tusd's). It logs
// every 5xx with its cause.
func (rs Responder) Resolve(ctx context.Context, err error) (status int, body string, header http.Header) {
	status, body = http.StatusInternalServerError, "internal server error"
	var se *StatusError
	if errors.As(err, &se) {
		status, body, header = se.Status, se.Body, se.Header
	} else {
		for _, rule := range rs.Rules {
			if errors.Is(err, rule.Err) {
				status, body = rule.Status, rule.Body
				break
			}
		}
	}
	log := logging.From(ctx)
	if status >= 500 {
		log.Error("request failed", "status", status, "err", err)
	} else {
		log.Debug("request refused", "status", status, "err", err)
	}
	return status, body, header
}

// Text writes a plain-text body, as the original Flask services did.
func Text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// JSON writes v as a JSON body with status. Answers about a caller's own
// data (jobs, claims) also set Cache-Control: no-store, so that no shared
// cache keeps them.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
