package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"mp3converter/internal/httpx"
	"mp3converter/internal/jobs"
	"mp3converter/internal/message"
)

// listJobs answers one page of the caller's jobs, newest first: limit
// (default 100, at most 1000) and before (the last id of the previous
// page). A full page carries a Link header to the next one.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			responder.Error(w, r, httpx.Status(http.StatusBadRequest, "limit must be a number from 1 to 1000"))
			return
		}
		limit = n
	}
	before := q.Get("before")
	badBefore := httpx.Status(http.StatusBadRequest, "before must be the id of one of your jobs")
	if before != "" && !message.IsObjectID(before) {
		responder.Error(w, r, badBefore)
		return
	}
	list, err := s.Jobs.List(r.Context(), claimsFrom(r.Context()).Username, limit, before)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		responder.Error(w, r, badBefore)
		return
	case err != nil:
		responder.Error(w, r, fmt.Errorf("%w: list jobs: %w", errStorage, err))
		return
	}
	if list == nil {
		list = []jobs.Job{}
	}
	if len(list) == limit {
		next := url.Values{"limit": {strconv.Itoa(limit)}, "before": {list[len(list)-1].ID}}
		w.Header().Set("Link", "<"+strings.TrimRight(s.opt.PublicURL, "/")+"/jobs?"+next.Encode()+`>; rel="next"`)
	}
	writeJSON(w, list)
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if !message.IsObjectID(id) {
		responder.Error(w, r, jobs.ErrNotFound)
		return
	}
	j, err := s.Jobs.Get(r.Context(), id)
	if err != nil {
		if !errors.Is(err, jobs.ErrNotFound) {
			err = fmt.Errorf("%w: get job: %w", errStorage, err)
		}
		responder.Error(w, r, err)
		return
	}
	if j.Username != claimsFrom(r.Context()).Username || j.Status == jobs.Withdrawn {
		responder.Error(w, r, jobs.ErrNotFound)
		return
	}
	writeJSON(w, j)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Cache-Control", "no-store")
	httpx.JSON(w, http.StatusOK, v)
}
