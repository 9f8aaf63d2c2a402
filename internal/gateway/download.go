package gateway

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/downloadlink"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/httpx"
	"mp3converter/internal/logging"
	"mp3converter/internal/retention"
	"mp3converter/internal/token"
)

// download serves GET /download?fid= with a bearer token (behind
// requireUser): the caller's own MP3, or any for an admin.
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
		s.downloadFailed(w, r, fid, err)
		return
	}
	// Someone else's MP3 looks exactly like a missing one (admins see all).
	if owner := ownerOf(info); owner != claims.Username && !claims.IsAdmin() {
		s.metrics.downloads.WithLabelValues("not_found").Inc()
		responder.Error(w, r, gridfs.ErrNotFound)
		return
	}
	s.serveMP3(w, r, id, fid, info)
}

// linkDownload serves GET /download?fid=&expires=&sig= without a token: a
// signed link from the email (see internal/downloadlink), checked against
// the owner of the stored MP3. It opens that one MP3 and nothing else. A
// link that is expired, altered, signed with another key, or arrives while
// links are off gets 403 with a sentence that says so and where to log in;
// so does one for an MP3 that is not there (a link reveals nothing about
// other users' files). A valid link to an MP3 the retention sweeper deleted
// gets the 410 its owner gets.
func (s *Server) linkDownload(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	refuse := func(body string, cause error) {
		s.metrics.downloads.WithLabelValues("link_refused").Inc()
		responder.Error(w, r, &httpx.StatusError{Status: http.StatusForbidden, Body: body + "; log in at " + s.loginURL() +
			" to download your MP3s", Err: cause})
	}
	if s.opt.Links == nil {
		refuse("download links are not enabled on this server", errors.New("no DOWNLOAD_LINK_KEY"))
		return
	}
	const bodyInvalid = "this download link is not valid: it was altered, it was made with a key that has since been replaced, or its MP3 no longer exists"
	link, err := downloadlink.Parse(r.URL.Query())
	if err != nil {
		refuse(bodyInvalid, err)
		return
	}
	id, err := bson.ObjectIDFromHex(link.FID)
	if err != nil {
		refuse(bodyInvalid, fmt.Errorf("%w: fid %q", downloadlink.ErrInvalid, link.FID))
		return
	}
	link.FID = id.Hex() // as the notification signs it
	sctx, cancel := context.WithTimeout(ctx, s.opt.RequestTimeout)
	defer cancel()
	info, err := s.MP3s.Stat(sctx, id)
	owner, gone := ownerOf(info), error(nil)
	if errors.Is(err, gridfs.ErrNotFound) {
		var ts retention.Tombstone
		ts, err = s.tombstone(sctx, id)
		owner, gone = ts.Owner, goneError(ts)
	}
	switch {
	case errors.Is(err, gridfs.ErrNotFound):
		refuse(bodyInvalid, fmt.Errorf("%w: no mp3 %s", downloadlink.ErrInvalid, link.FID))
		return
	case err != nil:
		s.downloadFailed(w, r, link.FID, err)
		return
	}
	switch err := s.opt.Links.Verify(link, owner, time.Now()); {
	case errors.Is(err, downloadlink.ErrExpired):
		refuse("this download link expired on "+link.Expires.UTC().Format("2006-01-02 15:04 MST"), err)
		return
	case err != nil:
		refuse(bodyInvalid, err)
		return
	}
	ctx = logging.Into(ctx, logging.From(ctx).With("username", owner, "via", "signed link"))
	r = r.WithContext(ctx)
	if gone != nil {
		s.downloadFailed(w, r, link.FID, gone)
		return
	}
	s.serveMP3(w, r, id, link.FID, info)
}

// loginURL is where a refused link sends its user: the web page.
func (s *Server) loginURL() string {
	if s.opt.PublicURL == "" {
		return "/"
	}
	return strings.TrimRight(s.opt.PublicURL, "/") + "/"
}

// downloadFailed answers a download that found no MP3 to stream (not
// found, expired, storage failure), counting it.
func (s *Server) downloadFailed(w http.ResponseWriter, r *http.Request, fid string, err error) {
	result := "not_found"
	if !errors.Is(err, gridfs.ErrNotFound) && !isStatus(err) {
		result = "error"
		err = fmt.Errorf("%w: stat mp3 %s: %w", errStorage, fid, err)
	}
	s.metrics.downloads.WithLabelValues(result).Inc()
	responder.Error(w, r, err)
}

// serveMP3 streams the MP3 as an attachment named <fid>.mp3, with ranges
// and the idle timeout.
func (s *Server) serveMP3(w http.ResponseWriter, r *http.Request, id bson.ObjectID, fid string, info gridfs.FileInfo) {
	s.metrics.downloads.WithLabelValues("ok").Inc()
	w.Header().Set("Content-Type", "audio/mpeg")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fid + ".mp3"}))
	w.Header().Set("Cache-Control", "private, no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	src := gridfs.NewSeeker(r.Context(), s.MP3s, id, info.Length, planRanges(r, info.Length))
	defer src.Close()
	http.ServeContent(&idleWriter{ResponseWriter: w, rc: http.NewResponseController(w), idle: s.opt.DownloadIdleTimeout}, r, "", info.UploadDate, src)
}

// expired answers a download of an MP3 that is not there: 410 when the
// retention sweeper deleted it (for its owner, or an admin), else not
// found.
func (s *Server) expired(ctx context.Context, id bson.ObjectID, claims token.Claims) error {
	ts, err := s.tombstone(ctx, id)
	switch {
	case err != nil:
		return err
	case ts.Owner != claims.Username && !claims.IsAdmin():
		return gridfs.ErrNotFound
	}
	return goneError(ts)
}

// tombstone is what the retention sweeper left of a deleted MP3;
// gridfs.ErrNotFound when it left nothing.
func (s *Server) tombstone(ctx context.Context, id bson.ObjectID) (retention.Tombstone, error) {
	if s.Expired == nil {
		return retention.Tombstone{}, gridfs.ErrNotFound
	}
	ts, err := s.Expired.Get(ctx, id)
	if errors.Is(err, retention.ErrNotFound) {
		return retention.Tombstone{}, gridfs.ErrNotFound
	}
	return ts, err
}

// goneError is the 410 for an MP3 the sweeper deleted.
func goneError(ts retention.Tombstone) error {
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
