package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	tusd "github.com/tus/tusd/v2/pkg/handler"
	"go.mongodb.org/mongo-driver/v2/bson"
	xslog "golang.org/x/exp/slog"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/logging"
	"mp3converter/internal/message"
	"mp3converter/internal/tus"
)

// resumablePath is where the tus 1.0 endpoint is mounted: POST
// /uploads creates an upload, HEAD/PATCH/DELETE /uploads/{id} resume,
// send and terminate it. An upload's id is its video's fid, and so its
// job's id (GET /jobs/{id}).
const resumablePath = "/uploads"

// lockTTL is how long the lock of an upload outlives a gateway that died
// while it held it: how long a client resuming on another replica (or the
// restarted one) waits at most. tusd waits 20 s for a lock.
const lockTTL = 10 * time.Second

// resumable serves resumable uploads (the tus 1.0 protocol: core,
// creation, creation-with-upload, termination, expiration) with tusd's
// handler over the videos bucket. The limits are /upload's: the file size,
// the user's quota (open uploads count by their declared size) and active
// conversions (open uploads count too), the content type (the tus metadata
// "filetype") and the name ("filename"). The last byte in, the upload is
// queued exactly as /upload queues its file.
type resumable struct {
	s     *Server
	store *tus.Store
	tusd  http.Handler
}

func (s *Server) newResumable(bucket *gridfs.Bucket) (*resumable, error) {
	rs := &resumable{s: s}
	rs.store = tus.NewStore(bucket, tus.Options{
		Lifetime: s.opt.ResumableLifetime,
		Owner:    func(ctx context.Context) string { return claimsFrom(ctx).Username },
		Prepare:  rs.prepare,
		Complete: rs.complete,
	})
	composer := tusd.NewStoreComposer()
	rs.store.UseIn(composer)
	tus.NewLocker(bucket.Database().Collection(gridfs.PartialLocksCollection), lockTTL).UseIn(composer)
	h, err := tusd.NewHandler(tusd.Config{
		StoreComposer:        composer,
		BasePath:             resumablePath + "/",
		MaxSize:              s.opt.MaxUploadBytes,
		DisableDownload:      true, // the MP3 is downloaded, not the video
		DisableConcatenation: true,
		// tusd's own log is every request twice at Info; the gateway's
		// access log and responder say what matters.
		Logger: xslog.New(xslog.NewTextHandler(discard{}, nil)),
		Cors:   &tusd.CorsConfig{Disable: true}, // same origin: the page is served here
	})
	if err != nil {
		return nil, fmt.Errorf("resumable uploads: %w", err)
	}
	rs.tusd = http.StripPrefix(resumablePath, h)
	return rs, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// ServeHTTP answers OPTIONS (protocol discovery, no credentials needed)
// itself and every other request behind the bearer token. A request about
// an upload that is not the caller's is answered 404 before tusd sees it,
// so that nobody can take another user's upload's lock.
func (rs *resumable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w = &tusHeaders{ResponseWriter: w, method: r.Method, lifetime: rs.s.opt.ResumableLifetime}
	if r.Method == http.MethodOptions {
		rs.tusd.ServeHTTP(w, r)
		return
	}
	rs.s.requireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			// tusd would answer 501 to Upload-Defer-Length (the limits need
			// the size up front), and its own words to a size over the
			// limit.
			length := r.Header.Get("Upload-Length")
			if length == "" {
				rs.refuse(w, r, tus.ErrNoLength)
				return
			}
			if n, err := strconv.ParseInt(length, 10, 64); err == nil && n > rs.s.opt.MaxUploadBytes {
				rs.refuse(w, r, rs.refusal(r.Context(), "too_large", tooLarge(rs.s.opt.MaxUploadBytes)))
				return
			}
		}
		if id := strings.Trim(strings.TrimPrefix(r.URL.Path, resumablePath), "/"); id != "" {
			p, err := rs.store.Owned(r.Context(), id)
			if err != nil {
				rs.refuse(w, r, err)
				return
			}
			if r.Method == http.MethodHead && !p.Done {
				w.(*tusHeaders).expires = p.Expires
			}
		}
		rs.tusd.ServeHTTP(w, r)
	})).ServeHTTP(w, r)
}

// refuse answers err as tusd would, in the gateway's words.
func (rs *resumable) refuse(w http.ResponseWriter, r *http.Request, err error) {
	var te tusd.Error
	if !errors.As(err, &te) {
		te = rs.tusError(r.Context(), err)
	}
	for k, v := range te.HTTPResponse.Header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Tus-Resumable", "1.0.0")
	w.WriteHeader(te.HTTPResponse.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(te.HTTPResponse.Body))
	}
}

// tusError is err as the responder answers it, for tusd to send.
func (rs *resumable) tusError(ctx context.Context, err error) tusd.Error {
	var te tusd.Error
	if errors.As(err, &te) {
		return te
	}
	status, body, header := responder.Resolve(ctx, err)
	e := tusd.Error{ErrorCode: fmt.Sprintf("ERR_%d", status), Message: body, HTTPResponse: tusd.HTTPResponse{
		StatusCode: status, Body: body, Header: tusd.HTTPHeader{"Content-Type": "text/plain; charset=utf-8"}}}
	for k := range header {
		e.HTTPResponse.Header[k] = header.Get(k)
	}
	return e
}

// prepare checks a new upload against /upload's rules and names it.
func (rs *resumable) prepare(ctx context.Context, info tusd.FileInfo) (gridfs.Partial, error) {
	s := rs.s
	user := claimsFrom(ctx).Username
	if info.Size > s.opt.MaxUploadBytes {
		return gridfs.Partial{}, rs.refusal(ctx, "too_large", tooLarge(s.opt.MaxUploadBytes))
	}
	maxFile, err := s.quota(ctx, user, 0)
	if err != nil {
		return gridfs.Partial{}, rs.refusal(ctx, "quota", err)
	}
	if info.Size > maxFile {
		return gridfs.Partial{}, rs.refusal(ctx, "quota", quotaFull(s.opt.UserQuotaBytes))
	}
	ctype, err := contentType(info.MetaData["filetype"])
	if err != nil {
		return gridfs.Partial{}, rs.refusal(ctx, "content_type", err)
	}
	name := message.Filename(info.MetaData["filename"])
	if name == "" {
		name = "upload"
	}
	meta, err := bson.Marshal(videoMeta{Owner: user, Filename: name, ContentType: ctype})
	if err != nil {
		return gridfs.Partial{}, err
	}
	return gridfs.Partial{Name: name, Metadata: meta}, nil
}

func (rs *resumable) refusal(ctx context.Context, result string, err error) error {
	rs.s.metrics.uploads.WithLabelValues(result).Inc()
	return rs.tusError(ctx, err)
}

// complete queues the conversion of an upload whose last byte is in, as
// /upload does; a job left by an earlier try of this very upload is
// either this one (accepted before: nothing to do) or a withdrawn one
// (its publish failed), which gives way.
func (rs *resumable) complete(ctx context.Context, file gridfs.FileInfo) error {
	s := rs.s
	fid := file.ID.Hex()
	if j, err := s.Jobs.Get(ctx, fid); err == nil {
		if j.Status != jobs.Withdrawn {
			return nil
		}
		if err := s.Jobs.Delete(ctx, fid); err != nil {
			return rs.tusError(ctx, fmt.Errorf("%w: replace withdrawn job: %w", errStorage, err))
		}
	} else if !errors.Is(err, jobs.ErrNotFound) {
		return rs.tusError(ctx, fmt.Errorf("%w: job: %w", errStorage, err))
	}
	user := claimsFrom(ctx).Username
	if result, err := s.queue(ctx, user, file); err != nil {
		s.metrics.uploads.WithLabelValues(result).Inc()
		return rs.tusError(ctx, err)
	}
	s.metrics.uploads.WithLabelValues("ok").Inc()
	s.metrics.uploadBytes.Add(float64(file.Length))
	logging.From(ctx).Info("video uploaded", "video_fid", fid, "bytes", file.Length, "filename", file.Name, "resumable", true)
	return nil
}

// tusHeaders adds the expiration extension to tusd's answers (the
// extension in the discovery, OPTIONS, and Upload-Expires on the answers
// that create, resume or extend an upload) and makes a new upload's
// Location a path.
type tusHeaders struct {
	http.ResponseWriter
	method   string
	lifetime time.Duration
	expires  time.Time // HEAD: the upload's; zero: none to tell
}

func (t *tusHeaders) WriteHeader(status int) {
	h := t.Header()
	switch {
	case t.method == http.MethodOptions && h.Get("Tus-Extension") != "":
		h.Set("Tus-Extension", h.Get("Tus-Extension")+",expiration")
	case status/100 != 2:
	case t.method == http.MethodPost || t.method == http.MethodPatch:
		h.Set("Upload-Expires", time.Now().Add(t.lifetime).UTC().Format(http.TimeFormat))
		// tusd makes the Location absolute from the request's Host and
		// TLS, which behind a TLS-terminating ingress says http://: a
		// path (the tus protocol allows one) is right wherever the client
		// came in.
		if u, err := url.Parse(h.Get("Location")); err == nil && u.Path != "" {
			h.Set("Location", u.RequestURI())
		}
	case t.method == http.MethodHead && !t.expires.IsZero():
		h.Set("Upload-Expires", t.expires.UTC().Format(http.TimeFormat))
	}
	t.ResponseWriter.WriteHeader(status)
}

func (t *tusHeaders) Write(p []byte) (int, error) { return t.ResponseWriter.Write(p) }

// Unwrap lets tusd reach the connection's deadlines
// (http.ResponseController).
func (t *tusHeaders) Unwrap() http.ResponseWriter { return t.ResponseWriter }
