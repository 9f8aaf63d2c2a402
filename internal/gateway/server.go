package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/authclient"
	"mp3converter/internal/downloadlink"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/httpx"
	"mp3converter/internal/jobs"
	"mp3converter/internal/mq"
	"mp3converter/internal/retention"
	"mp3converter/internal/token"
	"mp3converter/internal/web"
)

// The interfaces the gateway needs, satisfied by authclient.Client,
// gridfs.Bucket, jobs.Store and mq.Conn.
type (
	authService interface {
		Login(ctx context.Context, authorization, clientAddr string) (authclient.Response, error)
		Validate(ctx context.Context, authorization string) (token.Claims, error)
	}
	videoStore interface {
		Upload(ctx context.Context, name string, r io.Reader, meta any, opt gridfs.UploadOptions) (gridfs.FileInfo, error)
		Delete(ctx context.Context, id bson.ObjectID) error
		OwnerBytes(ctx context.Context, owner string) (int64, error)
	}
	mp3Store interface {
		OwnerBytes(ctx context.Context, owner string) (int64, error)
		Stat(ctx context.Context, id bson.ObjectID) (gridfs.FileInfo, error)
		OpenRange(ctx context.Context, id bson.ObjectID, offset, length int64) (io.ReadCloser, gridfs.FileInfo, error)
		Delete(ctx context.Context, id bson.ObjectID) error
	}
	jobStore interface {
		Create(ctx context.Context, j jobs.Job) error
		Get(ctx context.Context, id string) (jobs.Job, error)
		List(ctx context.Context, username string, limit int, before string) ([]jobs.Job, error)
		CountActive(ctx context.Context, username string) (int64, error)
		Withdraw(ctx context.Context, id string) error
		Delete(ctx context.Context, id string) error
	}
	expiredStore interface {
		Get(ctx context.Context, id bson.ObjectID) (retention.Tombstone, error)
	}
	publisher interface {
		Publish(ctx context.Context, queue string, msg mq.Message) error
	}
)

// Deps are the gateway's collaborators.
type Deps struct {
	Auth      authService
	Videos    videoStore
	MP3s      mp3Store
	Jobs      jobStore
	Expired   expiredStore // nil: expired MP3s answer 404
	Publisher publisher
	// Partials is the videos bucket, for resumable uploads (tus); nil: no
	// resumable uploads.
	Partials *gridfs.Bucket
	Ops      *httpx.Ops
	Log      *slog.Logger
}

// Options are the gateway's limits.
type Options struct {
	VideoQueue     string
	MaxUploadBytes int64
	UploadTimeout  time.Duration
	PublishTimeout time.Duration
	RequestTimeout time.Duration
	// DownloadIdleTimeout drops a download whose client has not taken a
	// byte for this long [2m]; a slow but steady download goes on.
	DownloadIdleTimeout time.Duration
	TrustedProxies      httpx.Proxies // zero: loopback and private peers
	// UserQuotaBytes bounds what one user's videos and MP3s take in
	// storage; UserMaxActive their conversions queued or converting at
	// once. 0: no limit.
	UserQuotaBytes int64
	UserMaxActive  int
	// PublicURL, if set, makes the links in answers absolute.
	PublicURL string
	// ResumableLifetime: a resumable upload that receives nothing for
	// this long expires [24h].
	ResumableLifetime time.Duration
	// Links verifies signed download links (GET /download?fid=&expires=&sig=
	// without a token); nil refuses them.
	Links *downloadlink.Signer
}

// Server is the gateway's HTTP handler.
type Server struct {
	Deps
	opt     Options
	router  chi.Router
	metrics metrics
	// userDownload is download behind requireUser: GET /download with a
	// bearer token.
	userDownload http.Handler
	hub          *hub // the open event streams (GET /events)
}

type metrics struct {
	uploads     *prometheus.CounterVec
	uploadBytes prometheus.Counter
	downloads   *prometheus.CounterVec
}

// NewServer builds the routes.
func NewServer(d Deps, opt Options) *Server {
	if opt.DownloadIdleTimeout <= 0 {
		opt.DownloadIdleTimeout = 2 * time.Minute
	}
	if opt.ResumableLifetime <= 0 {
		opt.ResumableLifetime = 24 * time.Hour
	}
	s := &Server{Deps: d, opt: opt, router: chi.NewRouter(), hub: newHub()}
	s.metrics = metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_uploads_total", Help: "Uploads by result.",
		}, []string{"result"}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_upload_bytes_total", Help: "Bytes of videos stored.",
		}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_downloads_total", Help: "Downloads by result.",
		}, []string{"result"}),
	}
	d.Ops.Registry.MustRegister(s.metrics.uploads, s.metrics.uploadBytes, s.metrics.downloads)

	r := s.router
	r.Use(httpx.Middleware(d.Log, httpx.NewMetrics(d.Ops.Registry), 0))
	// Readiness and metrics are served on the ops port (httpx.OpsHandler),
	// not here where the Ingress exposes them; liveness is harmless.
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { httpx.Text(w, http.StatusOK, "ok") })
	r.Get("/openapi.json", serveOpenAPI)
	web.Mount(r)
	r.With(httpx.Timeout(opt.RequestTimeout)).Post("/login", s.login)
	s.userDownload = s.requireUser(http.HandlerFunc(s.download))
	// A signed link (no Authorization, an expires or sig) is checked by
	// linkDownload; any other download needs a bearer token.
	r.Get("/download", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" && downloadlink.Signed(r.URL.Query()) {
			s.linkDownload(w, r)
			return
		}
		s.userDownload.ServeHTTP(w, r)
	})
	// Resumable uploads (tus): OPTIONS needs no token, the rest do (see
	// resumable.ServeHTTP).
	var tus http.Handler = http.NotFoundHandler() // no bucket for them (tests)
	if d.Partials != nil {
		rs, err := s.newResumable(d.Partials)
		if err != nil {
			panic(err) // tusd refuses only a malformed configuration: a bug here
		}
		tus = httpx.Timeout(opt.UploadTimeout)(rs)
	}
	r.Method(http.MethodOptions, resumablePath, tus)
	r.Method(http.MethodPost, resumablePath, tus)
	for _, m := range []string{http.MethodOptions, http.MethodHead, http.MethodPatch, http.MethodDelete} {
		r.Method(m, resumablePath+"/{id}", tus)
	}
	r.Group(func(r chi.Router) {
		r.Use(s.requireUser)
		r.With(httpx.Timeout(opt.UploadTimeout)).Post("/upload", s.upload)
		r.With(httpx.Timeout(opt.RequestTimeout)).Get("/jobs", s.listJobs)
		r.With(httpx.Timeout(opt.RequestTimeout)).Get("/jobs/{id}", s.getJob)
		r.With(httpx.Timeout(opt.RequestTimeout)).Delete("/jobs/{id}", s.deleteJob)
		r.Get("/events", s.events) // long-lived: no request timeout
	})
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }
