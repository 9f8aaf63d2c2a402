package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/httpx"
	"mp3converter/internal/jobs"
	"mp3converter/internal/logging"
	"mp3converter/internal/message"
	"mp3converter/internal/mq"
)

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
	user := claimsFrom(ctx).Username
	// The multipart envelope adds a little to the file; the file itself is
	// limited exactly by the store.
	limit := s.opt.MaxUploadBytes + 1<<20
	if r.ContentLength > limit {
		// Refused before a byte of the body is read (and the connection
		// closed: see httpx.Middleware).
		s.refuseUpload(w, r, "too_large", tooLarge(s.opt.MaxUploadBytes))
		return
	}
	maxFile, err := s.quota(ctx, user, r.ContentLength)
	if err != nil {
		s.refuseUpload(w, r, "quota", err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	// The server's read deadline (REQUEST_TIMEOUT) is for every other
	// request; an authenticated upload gets its own, long one.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opt.UploadTimeout))

	video, result, err := s.receive(ctx, r, user, maxFile)
	if err != nil {
		s.refuseUpload(w, r, result, err)
		return
	}
	if result, err := s.commit(ctx, user, video); err != nil {
		s.refuseUpload(w, r, result, err)
		return
	}
	s.metrics.uploads.WithLabelValues("ok").Inc()
	s.metrics.uploadBytes.Add(float64(video.Length))
	logging.From(ctx).Info("video uploaded", "video_fid", video.ID.Hex(), "bytes", video.Length, "filename", video.Name)
	w.Header().Set("Location", "/jobs/"+video.ID.Hex())
	httpx.Text(w, http.StatusOK, bodySuccess)
}

// receive reads the multipart body of r and stores its one file, of at
// most maxFile bytes, as user's video. Form fields beside the file are
// read and dropped. On failure nothing stays stored, and it returns the
// result to count (see refuseUpload) with the error to answer.
func (s *Server) receive(ctx context.Context, r *http.Request, user string, maxFile int64) (gridfs.FileInfo, string, error) {
	mr, budget, err := multipartReader(r)
	if err != nil {
		return gridfs.FileInfo{}, "not_multipart", httpx.Status(http.StatusBadRequest, bodyOneFile)
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
			return gridfs.FileInfo{}, "bad_body", bodyError(err)
		}
		if part.FileName() == "" {
			// An ordinary form field: not a file, ignore it (bounded).
			n, err := io.Copy(io.Discard, io.LimitReader(part, maxFieldBytes+1))
			if err == nil && n > maxFieldBytes {
				err = httpx.Status(http.StatusBadRequest, fmt.Sprintf("a form field other than the file holds more than %d KiB", maxFieldBytes>>10))
			}
			if err != nil {
				discard()
				return gridfs.FileInfo{}, "bad_body", bodyError(err)
			}
			continue
		}
		if stored != nil {
			discard()
			return gridfs.FileInfo{}, "two_files", httpx.Status(http.StatusBadRequest, bodyOneFile)
		}
		ctype, err := contentType(part.Header.Get("Content-Type"))
		if err != nil {
			return gridfs.FileInfo{}, "content_type", err
		}
		name := message.Filename(part.FileName())
		if name == "" {
			name = "upload"
		}
		src := &httpx.TrackingReader{R: part}
		info, err := s.Videos.Upload(ctx, name, src, videoMeta{Owner: user, Filename: name, ContentType: ctype},
			gridfs.UploadOptions{MaxBytes: maxFile})
		switch {
		case errors.Is(err, gridfs.ErrTooLarge) && maxFile < s.opt.MaxUploadBytes:
			return gridfs.FileInfo{}, "quota", quotaFull(s.opt.UserQuotaBytes)
		case errors.Is(err, gridfs.ErrTooLarge):
			return gridfs.FileInfo{}, "too_large", tooLarge(s.opt.MaxUploadBytes)
		case src.Err != nil:
			return gridfs.FileInfo{}, "bad_body", bodyError(src.Err)
		case err != nil:
			return gridfs.FileInfo{}, "error", fmt.Errorf("%w: store video: %w", errStorage, err)
		}
		stored = &info
		if info.Length == 0 {
			discard()
			return gridfs.FileInfo{}, "empty", httpx.Status(http.StatusBadRequest, "the file is empty")
		}
	}
	if stored == nil {
		return gridfs.FileInfo{}, "no_file", httpx.Status(http.StatusBadRequest, bodyOneFile)
	}
	return *stored, "", nil
}

// commit turns user's stored video into a queued conversion (queue); when
// that fails the video is deleted too, so that the client can simply
// retry.
func (s *Server) commit(ctx context.Context, user string, video gridfs.FileInfo) (string, error) {
	result, err := s.queue(ctx, user, video)
	if err != nil {
		s.deleteVideo(ctx, video.ID)
	}
	return result, err
}

// queue records user's stored video as a queued job, then publishes the
// conversion message and waits for the broker's confirm. When the publish
// fails the job is withdrawn. It returns the result to count (see
// refuseUpload) with the error to answer.
func (s *Server) queue(ctx context.Context, user string, video gridfs.FileInfo) (string, error) {
	fid := video.ID.Hex()
	now := time.Now().UTC()
	job := jobs.Job{ID: fid, Username: user, Filename: video.Name, Status: jobs.Queued,
		VideoFID: fid, CreatedAt: now, UpdatedAt: now}
	if err := s.Jobs.Create(ctx, job); err != nil {
		return "error", fmt.Errorf("%w: create job: %w", errStorage, err)
	}
	msg := message.Conversion{VideoFID: fid, Username: user, Filename: video.Name}
	pctx, cancel := context.WithTimeout(ctx, s.opt.PublishTimeout)
	err := s.Publisher.Publish(pctx, s.opt.VideoQueue, mq.Message{Body: msg.Encode(), MessageID: fid})
	cancel()
	if err != nil {
		// The message may still reach the queue (the broker may have it and
		// only its confirm be late): the job stays as a withdrawn
		// tombstone, and the converter drops such a message without a word
		// to the user, who was told the upload failed.
		s.withdrawJob(ctx, fid)
		return "publish_failed", fmt.Errorf("publish %s: %w", fid, err)
	}
	return "", nil
}

// quota checks the user's limits before an upload is read: conversions
// in flight (429) and storage (413, counting the declared body length when
// there is one). It returns the most bytes the file may have.
func (s *Server) quota(ctx context.Context, user string, declared int64) (int64, error) {
	// Open resumable uploads count as what they will be: a conversion, and
	// their declared size.
	var openUploads, openBytes int64
	if s.Partials != nil && (s.opt.UserMaxActive > 0 || s.opt.UserQuotaBytes > 0) {
		var err error
		if openUploads, openBytes, err = s.Partials.OpenPartials(ctx, user); err != nil {
			return 0, fmt.Errorf("%w: %w", errStorage, err)
		}
	}
	if s.opt.UserMaxActive > 0 {
		n, err := s.Jobs.CountActive(ctx, user)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errStorage, err)
		}
		if n+openUploads >= int64(s.opt.UserMaxActive) {
			body := fmt.Sprintf("you have %d conversions queued or converting, the most at once: upload again when one is done", n)
			if openUploads > 0 {
				body = fmt.Sprintf("you have %d conversions queued or converting and %d resumable uploads open, the most at once: upload again when one is done", n, openUploads)
			}
			return 0, &httpx.StatusError{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"60"}}, Body: body}
		}
	}
	maxFile := s.opt.MaxUploadBytes
	if s.opt.UserQuotaBytes > 0 {
		used := openBytes
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
		fmt.Sprintf("your storage quota of %s is full: the file does not fit beside your videos and MP3s", logging.Bytes(quota)))
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
