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
	"mp3converter/internal/retention"
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
	if j, ok := s.ownJob(w, r); ok {
		writeJSON(w, j)
	}
}

// bodyJobRunning refuses to delete a job under a running conversion: the
// converter would go on writing its MP3 and its record.
const bodyJobRunning = "this conversion is still running: delete it once it is done or has failed"

// deleteJob deletes one of the caller's jobs that is done (its MP3 kept or
// expired) or failed: its MP3 and video, whichever are stored, then its
// record (the retention sweeper's own deletion). 204; 409 while queued or
// converting; 404 like GET /jobs/{id}.
func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) {
	j, ok := s.ownJob(w, r)
	if !ok {
		return
	}
	if j.Status != jobs.Done && j.Status != jobs.Failed {
		responder.Error(w, r, httpx.Status(http.StatusConflict, bodyJobRunning))
		return
	}
	if err := retention.DeleteJob(r.Context(), s.Videos, s.MP3s, s.Jobs, j); err != nil {
		responder.Error(w, r, fmt.Errorf("%w: %w", errStorage, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ownJob is job {id} when it is the caller's; otherwise it answers 404
// (another user's job looks like none) or the storage failure.
func (s *Server) ownJob(w http.ResponseWriter, r *http.Request) (jobs.Job, bool) {
	id := chi.URLParam(r, "id")
	if !message.IsObjectID(id) {
		responder.Error(w, r, jobs.ErrNotFound)
		return jobs.Job{}, false
	}
	j, err := s.Jobs.Get(r.Context(), id)
	if err != nil {
		if !errors.Is(err, jobs.ErrNotFound) {
			err = fmt.Errorf("%w: get job: %w", errStorage, err)
		}
		responder.Error(w, r, err)
		return jobs.Job{}, false
	}
	if j.Username != claimsFrom(r.Context()).Username || j.Status == jobs.Withdrawn {
		responder.Error(w, r, jobs.ErrNotFound)
		return jobs.Job{}, false
	}
	return j, true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Cache-Control", "no-store")
	httpx.JSON(w, http.StatusOK, v)
}
