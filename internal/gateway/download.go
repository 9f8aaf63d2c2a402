package gateway

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/httpx"
	"mp3converter/internal/retention"
	"mp3converter/internal/token"
)

func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	fid := r.URL.Query().Get("fid")
	if fid == "" {
		responder.Error(w, r, httpx.Status(http.StatusBadRequest, bodyFIDRequired))
		return
	}
	id, err := bson.ObjectIDFromHex(fid)
	if err != nil {
		responder.Error(w, r, httpx.Status(http.StatusBadRequest, "fid must be a 24-digit hex id"))
		return
	}
	sctx, cancel := context.WithTimeout(ctx, s.opt.RequestTimeout)
	defer cancel()
	claims := claimsFrom(ctx)
	info, err := s.MP3s.Stat(sctx, id)
	if errors.Is(err, gridfs.ErrNotFound) {
		err = s.expired(sctx, id, claims)
	}
	if err != nil {
		result := "not_found"
		if !errors.Is(err, gridfs.ErrNotFound) && !isStatus(err) {
			result = "error"
			err = fmt.Errorf("%w: stat mp3 %s: %w", errStorage, fid, err)
		}
		s.metrics.downloads.WithLabelValues(result).Inc()
		responder.Error(w, r, err)
		return
	}
	// Someone else's MP3 looks exactly like a missing one (admins see all).
	if owner := ownerOf(info); owner != claims.Username && !claims.IsAdmin() {
		s.metrics.downloads.WithLabelValues("not_found").Inc()
		responder.Error(w, r, gridfs.ErrNotFound)
		return
	}
	s.metrics.downloads.WithLabelValues("ok").Inc()
	w.Header().Set("Content-Type", "audio/mpeg")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fid + ".mp3"}))
	w.Header().Set("Cache-Control", "private, no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	src := gridfs.NewSeeker(ctx, s.MP3s, id, info.Length, planRanges(r, info.Length))
	defer src.Close()
	http.ServeContent(&idleWriter{ResponseWriter: w, rc: http.NewResponseController(w), idle: s.opt.DownloadIdleTimeout}, r, "", info.UploadDate, src)
}

// expired answers a download of an MP3 that is not there: 410 when the
// retention sweeper deleted it (for its owner, or an admin), else not
// found.
func (s *Server) expired(ctx context.Context, id bson.ObjectID, claims token.Claims) error {
	if s.Expired == nil {
		return gridfs.ErrNotFound
	}
	ts, err := s.Expired.Get(ctx, id)
	switch {
	case errors.Is(err, retention.ErrNotFound):
		return gridfs.ErrNotFound
	case err != nil:
		return err
	case ts.Owner != claims.Username && !claims.IsAdmin():
		return gridfs.ErrNotFound
	}
	return httpx.Status(http.StatusGone, fmt.Sprintf("this MP3 expired and was deleted on %s: upload the video again to convert it anew",
		ts.ExpiredAt.UTC().Format("2006-01-02")))
}

func ownerOf(info gridfs.FileInfo) string {
	if info.Metadata == nil {
		return ""
	}
	v, err := info.Metadata.LookupErr("owner")
	if err != nil {
		return ""
	}
	s, _ := v.StringValueOK()
	return s
}

// idleWriter moves the connection's write deadline forward before each
// write: a client that stops reading is dropped after idle (freeing the
// handler and its database cursor), while a slow but steady download of any
// size goes on. The server itself has no write timeout (see Run).
type idleWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

func (w *idleWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
	return w.ResponseWriter.Write(p)
}

func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
