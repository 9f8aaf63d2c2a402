package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/authclient"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/httpx"
	"mp3converter/internal/jobs"
	"mp3converter/internal/logging"
	"mp3converter/internal/message"
	"mp3converter/internal/mq"
	"mp3converter/internal/retention"
	"mp3converter/internal/token"
)

// The original's bodies, kept exactly.
const (
	bodyOneFile     = "exactly 1 file required"
	bodyFIDRequired = "fid is required"
	bodySuccess     = "success!"
)

// errStorage marks a failure of MongoDB (not of the client's input).
var errStorage = errors.New("storage unavailable")

// responder maps errors to what clients see, in one table. (Auth's
// refusals and failures arrive as *httpx.StatusError, with auth's status or
// 502, and pass through.)
var responder = httpx.Responder{Rules: []httpx.ErrorRule{
	{Err: authclient.ErrUnavailable, Status: http.StatusServiceUnavailable, Body: "auth service unavailable, try again later"},
	{Err: mq.ErrUnavailable, Status: http.StatusServiceUnavailable, Body: "could not queue the conversion, try again later"},
	{Err: mq.ErrClosed, Status: http.StatusServiceUnavailable, Body: "could not queue the conversion, try again later"},
	{Err: gridfs.ErrNotFound, Status: http.StatusNotFound, Body: "not found"},
	{Err: jobs.ErrNotFound, Status: http.StatusNotFound, Body: "not found"},
	{Err: errStorage, Status: http.StatusServiceUnavailable, Body: "storage unavailable, try again later"},
}}

type claimsKey struct{}

func claimsFrom(ctx context.Context) token.Claims {
	c, _ := ctx.Value(claimsKey{}).(token.Claims)
	return c
}

// requireUser validates the bearer token with auth on every request, as the
// original does; auth's 401/403 pass through unchanged. A request without
// a token is refused with 401 "missing credentials" before auth is asked
// (authclient.Client.Validate).
func (s *Server) requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := s.Auth.Validate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			responder.Error(w, r, err)
			return
		}
		ctx := context.WithValue(r.Context(), claimsKey{}, claims)
		ctx = logging.Into(ctx, logging.From(ctx).With("username", claims.Username))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	resp, err := s.Auth.Login(r.Context(), r.Header.Get("Authorization"), s.opt.TrustedProxies.ClientAddr(r))
	if err != nil {
		responder.Error(w, r, err)
		return
	}
	if resp.RetryAfter != "" {
		w.Header().Set("Retry-After", resp.RetryAfter)
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.Text(w, resp.Status, string(resp.Body))
}

// videoMeta is stored as the video's GridFS metadata.
type videoMeta struct {
	Owner       string `bson:"owner"`
	Filename    string `bson:"filename"`
	ContentType string `bson:"content_type"`
}

// upload streams the one file of a multipart body into GridFS, records a
// queued job and publishes the conversion message with a broker confirm;
// only then does the client get 200. Any failure removes what was stored.
//
// The work does not stop when the client hangs up: a client gone mid-body
// is seen as a read error (and everything is removed); one gone after the
// last byte gets its upload committed whole. Cancelling the stores and the
// publish half-way instead could leave a job or a message the cleanup
// cannot see (the server applies a write the driver abandoned).
func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := detach(r.Context())
	defer cancel()
	claims := claimsFrom(ctx)
	// The multipart envelope adds a little to the file; the file itself is
	// limited exactly by the store.
	limit := s.opt.MaxUploadBytes + 1<<20
	if r.ContentLength > limit {
		// Refused before a byte of the body is read (and the connection
		// closed: see httpx.Middleware).
		s.refuseUpload(w, r, "too_large", tooLarge(s.opt.MaxUploadBytes))
		return
	}
	maxFile, err := s.quota(ctx, claims.Username, r.ContentLength)
	if err != nil {
		s.refuseUpload(w, r, "quota", err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	// The server's read deadline (REQUEST_TIMEOUT) is for every other
	// request; an authenticated upload gets its own, long one.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opt.UploadTimeout))

	mr, budget, err := multipartReader(r)
	if err != nil {
		s.refuseUpload(w, r, "not_multipart", httpx.Status(http.StatusBadRequest, bodyOneFile))
		return
	}
	var stored *gridfs.FileInfo
	discard := func() {
		if stored != nil {
			s.deleteVideo(ctx, stored.ID)
			stored = nil
		}
	}
	for {
		budget.limit(maxPartHeaderBytes)
		part, err := mr.NextPart()
		budget.limit(-1)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			discard()
			s.refuseUpload(w, r, "bad_body", bodyError(err))
			return
		}
		if part.FileName() == "" {
			// An ordinary form field: not a file, ignore it (bounded).
			n, err := io.Copy(io.Discard, io.LimitReader(part, maxFieldBytes+1))
			if err == nil && n > maxFieldBytes {
				err = httpx.Status(http.StatusBadRequest, fmt.Sprintf("a form field other than the file holds more than %d KiB", maxFieldBytes>>10))
			}
			if err != nil {
				discard()
				s.refuseUpload(w, r, "bad_body", bodyError(err))
				return
			}
			continue
		}
		if stored != nil {
			discard()
			s.refuseUpload(w, r, "two_files", httpx.Status(http.StatusBadRequest, bodyOneFile))
			return
		}
		ctype, err := contentType(part.Header.Get("Content-Type"))
		if err != nil {
			s.refuseUpload(w, r, "content_type", err)
			return
		}
		name := message.Filename(part.FileName())
		if name == "" {
			name = "upload"
		}
		src := &trackingReader{r: part}
		info, err := s.Videos.Upload(ctx, name, src, videoMeta{Owner: claims.Username, Filename: name, ContentType: ctype},
			gridfs.UploadOptions{MaxBytes: maxFile})
		switch {
		case errors.Is(err, gridfs.ErrTooLarge) && maxFile < s.opt.MaxUploadBytes:
			s.refuseUpload(w, r, "quota", quotaFull(s.opt.UserQuotaBytes))
			return
		case errors.Is(err, gridfs.ErrTooLarge):
			s.refuseUpload(w, r, "too_large", tooLarge(s.opt.MaxUploadBytes))
			return
		case src.err != nil:
			s.refuseUpload(w, r, "bad_body", bodyError(src.err))
			return
		case err != nil:
			s.refuseUpload(w, r, "error", fmt.Errorf("%w: store video: %w", errStorage, err))
			return
		}
		stored = &info
		if info.Length == 0 {
			discard()
			s.refuseUpload(w, r, "empty", httpx.Status(http.StatusBadRequest, "the file is empty"))
			return
		}
	}
	if stored == nil {
		s.refuseUpload(w, r, "no_file", httpx.Status(http.StatusBadRequest, bodyOneFile))
		return
	}

	fid := stored.ID.Hex()
	now := time.Now().UTC()
	job := jobs.Job{ID: fid, Username: claims.Username, Filename: stored.Name, Status: jobs.Queued,
		VideoFID: fid, CreatedAt: now, UpdatedAt: now}
	if err := s.Jobs.Create(ctx, job); err != nil {
		discard()
		s.refuseUpload(w, r, "error", fmt.Errorf("%w: create job: %w", errStorage, err))
		return
	}
	msg := message.Conversion{VideoFID: fid, Username: claims.Username, Filename: stored.Name}
	pctx, cancel := context.WithTimeout(ctx, s.opt.PublishTimeout)
	err = s.Publisher.Publish(pctx, s.opt.VideoQueue, mq.Message{Body: msg.Encode(), MessageID: fid})
	cancel()
	if err != nil {
		// No video without a message: undo, so the client can simply retry.
		// The message may still reach the queue (the broker may have it and
		// only its confirm be late): the job stays as a withdrawn
		// tombstone, and the converter drops such a message without a word
		// to the user, who was told the upload failed.
		s.withdrawJob(ctx, fid)
		discard()
		s.refuseUpload(w, r, "publish_failed", fmt.Errorf("publish %s: %w", fid, err))
		return
	}
	s.metrics.uploads.WithLabelValues("ok").Inc()
	s.metrics.uploadBytes.Add(float64(stored.Length))
	logging.From(ctx).Info("video uploaded", "video_fid", fid, "bytes", stored.Length, "filename", stored.Name)
	w.Header().Set("Location", "/jobs/"+fid)
	httpx.Text(w, http.StatusOK, bodySuccess)
}

// quota checks the user's limits before an upload is read: conversions
// in flight (429) and storage (413, counting the declared body length when
// there is one). It returns the most bytes the file may have.
func (s *Server) quota(ctx context.Context, user string, declared int64) (int64, error) {
	if s.opt.UserMaxActive > 0 {
		n, err := s.Jobs.CountActive(ctx, user)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errStorage, err)
		}
		if n >= int64(s.opt.UserMaxActive) {
			return 0, &httpx.StatusError{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"60"}},
				Body: fmt.Sprintf("you have %d conversions queued or converting, the most at once: upload again when one is done", n)}
		}
	}
	maxFile := s.opt.MaxUploadBytes
	if s.opt.UserQuotaBytes > 0 {
		var used int64
		for _, store := range []interface {
			OwnerBytes(context.Context, string) (int64, error)
		}{s.Videos, s.MP3s} {
			n, err := store.OwnerBytes(ctx, user)
			if err != nil {
				return 0, fmt.Errorf("%w: %w", errStorage, err)
			}
			used += n
		}
		left := s.opt.UserQuotaBytes - used
		if left <= 0 || declared > left+1<<20 { // the multipart envelope adds a little
			return 0, quotaFull(s.opt.UserQuotaBytes)
		}
		maxFile = min(maxFile, left)
	}
	return maxFile, nil
}

func quotaFull(quota int64) error {
	return httpx.Status(http.StatusRequestEntityTooLarge,
		fmt.Sprintf("your storage quota of %s is full: the file does not fit beside your videos and MP3s", bytesText(quota)))
}

// bytesText is n in the largest binary unit that keeps it whole-ish.
func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', -1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', -1, 64) + " MiB"
	default:
		return strconv.FormatInt(n, 10) + " bytes"
	}
}

func (s *Server) refuseUpload(w http.ResponseWriter, r *http.Request, result string, err error) {
	s.metrics.uploads.WithLabelValues(result).Inc()
	responder.Error(w, r, err)
}

// detach returns a context with ctx's values and deadline that is not
// cancelled with ctx.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(context.WithoutCancel(ctx), dl)
	}
	return context.WithCancel(context.WithoutCancel(ctx))
}

// deleteVideo and withdrawJob undo a half-done upload even when the
// request's context is gone (the client disconnected).
func (s *Server) deleteVideo(ctx context.Context, id bson.ObjectID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.Videos.Delete(ctx, id); err != nil && !errors.Is(err, gridfs.ErrNotFound) {
		logging.From(ctx).Error("could not remove video of a failed upload", "video_fid", id.Hex(), "err", err)
	}
}

func (s *Server) withdrawJob(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.Jobs.Withdraw(ctx, id); err != nil && !errors.Is(err, jobs.ErrNotFound) {
		logging.From(ctx).Error("could not withdraw the job of a failed upload", "job_id", id, "err", err)
	}
}

// trackingReader remembers a read error of the request body, to tell a bad
// or truncated upload (the client's fault) from a storage failure.
type trackingReader struct {
	r   io.Reader
	err error
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		t.err = err
	}
	return n, err
}

// Limits of an upload's multipart envelope.
const (
	maxPartHeaderBytes = 32 << 10 // a part's headers (the multipart package's own limit is 10 MiB)
	maxFieldBytes      = 64 << 10 // a form field that is not the file
)

var errPartHeaders = fmt.Errorf("part headers longer than %d KiB", maxPartHeaderBytes>>10)

// multipartReader is http.Request.MultipartReader over a budget: while
// the budget is limited (around NextPart), at most that many bytes (plus
// the reader's 4 KiB read-ahead) may be read, so a part's headers cannot
// grow to the multipart package's 10 MiB per upload.
func multipartReader(r *http.Request) (*multipart.Reader, *readBudget, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, nil, http.ErrNotMultipart
	}
	b := &readBudget{r: r.Body, left: -1}
	return multipart.NewReader(b, params["boundary"]), b, nil
}

// readBudget reads from r, at most left bytes while left ≥ 0.
type readBudget struct {
	r    io.Reader
	left int64
}

// limit sets the budget: n bytes plus read-ahead, or none (n < 0).
func (b *readBudget) limit(n int64) {
	if n >= 0 {
		n += 8 << 10 // the multipart reader's read-ahead, and the boundary line
	}
	b.left = n
}

func (b *readBudget) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, errPartHeaders
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	return n, err
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return httpx.Status(http.StatusRequestEntityTooLarge, "file too large")
	}
	if errors.Is(err, errPartHeaders) {
		return &httpx.StatusError{Status: http.StatusBadRequest, Body: "malformed multipart body: " + errPartHeaders.Error(), Err: err}
	}
	var se *httpx.StatusError
	if errors.As(err, &se) {
		return err
	}
	return &httpx.StatusError{Status: http.StatusBadRequest, Body: "malformed or incomplete multipart body", Err: err}
}

func tooLarge(limit int64) error {
	return httpx.Status(http.StatusRequestEntityTooLarge, fmt.Sprintf("file too large: the limit is %d MiB", limit>>20))
}

// contentType accepts what a video or audio upload can carry: video/*,
// audio/*, generic binary, or nothing (curl and some browsers send
// application/octet-stream for unknown extensions).
func contentType(header string) (string, error) {
	if header == "" {
		return "application/octet-stream", nil
	}
	mt, _, err := mime.ParseMediaType(header)
	if err != nil {
		return "", httpx.Status(http.StatusUnsupportedMediaType, "unsupported file type: upload a video or audio file")
	}
	switch {
	case strings.HasPrefix(mt, "video/"), strings.HasPrefix(mt, "audio/"),
		mt == "application/octet-stream", mt == "application/mp4", mt == "application/ogg",
		mt == "application/x-matroska", mt == "application/vnd.rn-realmedia":
		return mt, nil
	}
	return "", httpx.Status(http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported file type %s: upload a video or audio file", mt))
}

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
	src := &seeker{ctx: ctx, store: s.MP3s, id: id, size: info.Length, ranges: planRanges(r, info.Length)}
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

func isStatus(err error) bool {
	var se *httpx.StatusError
	return errors.As(err, &se)
}

// idleWriter moves the connection's write deadline forward before each
// write: a client that stops reading is dropped after idle (freeing the
// handler and its database cursor), while a slow but steady download of any
// size goes on. The server itself has no write timeout (see cmd/gateway).
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

// seeker gives http.ServeContent (Range requests) a ReadSeeker over a GridFS
// file: it opens the stream lazily at the position last sought, reading to
// the end of the range that starts there (see planRanges), or of the file.
type seeker struct {
	ctx    context.Context
	store  mp3Store
	id     bson.ObjectID
	size   int64
	ranges []byteRange
	pos    int64
	rc     io.ReadCloser
}

func (s *seeker) Seek(offset int64, whence int) (int64, error) {
	var pos int64
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		pos = s.pos + offset
	case io.SeekEnd:
		pos = s.size + offset
	}
	if pos < 0 || pos > s.size {
		return 0, fmt.Errorf("seek to %d outside 0..%d", pos, s.size)
	}
	if pos != s.pos && s.rc != nil {
		s.rc.Close()
		s.rc = nil
	}
	s.pos = pos
	return pos, nil
}

func (s *seeker) Read(p []byte) (int, error) {
	if s.pos >= s.size {
		return 0, io.EOF
	}
	if s.rc == nil {
		length := int64(-1)
		for _, rg := range s.ranges {
			if rg.start == s.pos {
				length = rg.end - rg.start
				break
			}
		}
		rc, _, err := s.store.OpenRange(s.ctx, s.id, s.pos, length)
		if err != nil {
			return 0, err
		}
		s.rc = rc
	}
	n, err := s.rc.Read(p)
	s.pos += int64(n)
	return n, err
}

func (s *seeker) Close() error {
	if s.rc != nil {
		return s.rc.Close()
	}
	return nil
}

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
		w.Header().Set("Link", "</jobs?"+next.Encode()+`>; rel="next"`)
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
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
