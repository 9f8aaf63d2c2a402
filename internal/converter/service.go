package converter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/ffmpeg"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/logging"
	"mp3converter/internal/message"
	"mp3converter/internal/mq"
)

// Options tune a Service; Config.Options builds them from the environment.
type Options struct {
	VideoQueue, MP3Queue    string
	FFmpegPath, FFprobePath string
	Bitrate                 string // for ffmpeg, e.g. "128k"
	BitrateBPS              int    // the same in bits per second, for the metadata

	// Consume are the consumer settings (CONCURRENCY, PREFETCH,
	// MAX_ATTEMPTS, MAX_REDELIVERIES, RETRY_BACKOFF, MAX_RETRY_BACKOFF,
	// SHUTDOWN_TIMEOUT); Run adds the deferral bound, the redelivery-limit
	// hook and the logger.
	Consume mq.ConsumeOptions

	ScratchDir string
	// ScratchLimit bounds the bytes of this process's temporary files in
	// ScratchDir together (the emptyDir's sizeLimit); 0: only the file
	// system's free space.
	ScratchLimit    int64
	StreamFaststart bool
	// SeekableInput: ffmpeg reads the stored video where it needs to
	// (gridfs.RandomAccess served by ffmpeg.Seekable), with no temporary
	// file; false: pipe (faststart MP4) or temporary file, as before.
	SeekableInput bool
	MaxDuration   time.Duration
	MaxInputBytes int64
	ProbeTimeout  time.Duration
	JobTimeout    time.Duration
	// LeaseTTL is how long a video's lease lasts unrenewed (renewed every
	// third of it) [2m].
	LeaseTTL time.Duration
	// ProgressInterval is the least time between two progress updates of
	// a job record [1s].
	ProgressInterval time.Duration
	// KeepVideos keeps a video once its MP3 is stored; by default the
	// video is removed then (internal/retention sweeps what is left).
	KeepVideos bool
}

// The stores and the publisher a Service uses, as it uses them: satisfied
// by *gridfs.Bucket, *jobs.Store and *mq.Conn.
type (
	videoStore interface {
		Open(ctx context.Context, id bson.ObjectID, offset int64) (io.ReadCloser, gridfs.FileInfo, error)
		OpenRandom(ctx context.Context, id bson.ObjectID, opt gridfs.RandomOptions) (*gridfs.RandomAccess, error)
		Delete(ctx context.Context, id bson.ObjectID) error
	}
	mp3Store interface {
		Stat(ctx context.Context, id bson.ObjectID) (gridfs.FileInfo, error)
		Upload(ctx context.Context, name string, r io.Reader, meta any, opt gridfs.UploadOptions) (gridfs.FileInfo, error)
		Delete(ctx context.Context, id bson.ObjectID) error
	}
	jobStore interface {
		Get(ctx context.Context, id string) (jobs.Job, error)
		Progress(ctx context.Context, id string, pct int) error
		Done(ctx context.Context, id, mp3FID string) error
		Failed(ctx context.Context, id, reason string) error
		TakeLease(ctx context.Context, id string, h jobs.Holder, ttl time.Duration, dead func(jobs.Holder) bool) (jobs.Lease, error)
		RenewLease(ctx context.Context, id, owner string, ttl time.Duration) error
		ReleaseLease(ctx context.Context, id, owner string) error
		VideoDeleted(ctx context.Context, id string) error
	}
	publisher interface {
		Publish(ctx context.Context, queue string, msg mq.Message) error
	}
)

// Deps are what a Service works with.
type Deps struct {
	Videos    videoStore // GridFS "videos"
	MP3s      mp3Store   // GridFS "mp3s"
	Jobs      jobStore   // the job records (database "videos")
	Publisher publisher
	Log       *slog.Logger
	Metrics   *Metrics // nil: none
}

// Service converts videos to MP3s. Handle is its mq.Handler; Run consumes
// VideoQueue with it.
type Service struct {
	d       Deps
	opt     Options
	scratch *scratchSpace
	self    jobs.Holder   // this converter as a lease holder (see lease.go)
	seq     atomic.Uint64 // numbers the jobs' lease owners
	// maxDeferrals bounds the deferrals of a message for another
	// converter's lease (see maxDeferrals).
	maxDeferrals int
	// drops are the videos to remove once their job is acked (see
	// dropVideo): removing a large video's chunks takes long on some
	// servers, and the job's slot need not wait for it.
	drops chan *job
}

// pendingDrops bounds the videos waiting for removal; past it a video is
// left to the retention sweeper.
const pendingDrops = 256

// New checks the dependencies and options and returns a Service.
func New(d Deps, opt Options) (*Service, error) {
	switch {
	case d.Videos == nil || d.MP3s == nil || d.Jobs == nil || d.Publisher == nil || d.Log == nil:
		return nil, errors.New("converter: missing dependency")
	case opt.MP3Queue == "" || opt.FFmpegPath == "" || opt.FFprobePath == "" || opt.Bitrate == "":
		return nil, errors.New("converter: MP3Queue, FFmpegPath, FFprobePath and Bitrate are required")
	case opt.MaxDuration <= 0 || opt.MaxInputBytes <= 0 || opt.ProbeTimeout <= 0 || opt.JobTimeout <= 0:
		return nil, errors.New("converter: MaxDuration, MaxInputBytes, ProbeTimeout and JobTimeout must be > 0")
	}
	if opt.ScratchDir == "" || opt.ScratchLimit < 0 {
		return nil, errors.New("converter: ScratchDir is required and ScratchLimit must be ≥ 0")
	}
	if opt.ProgressInterval <= 0 {
		opt.ProgressInterval = time.Second
	}
	if opt.LeaseTTL <= 0 {
		opt.LeaseTTL = 2 * time.Minute
	}
	c := opt.Consume.WithDefaults()
	return &Service{d: d, opt: opt, drops: make(chan *job, pendingDrops), scratch: newScratchSpace(opt.ScratchDir, opt.ScratchLimit),
		self: processHolder(), maxDeferrals: maxDeferrals(opt.JobTimeout, opt.LeaseTTL, c.RetryBackoff, c.MaxBackoff)}, nil
}

// Consumer is the part of *mq.Conn that Run needs.
type Consumer interface {
	Consume(ctx context.Context, queue string, opt mq.ConsumeOptions, h mq.Handler) error
}

// Run removes the temporary files that converters which died left in
// ScratchDir (see sweepScratch), then consumes VideoQueue until ctx is
// cancelled, then lets the conversions in flight finish within
// ShutdownTimeout (after it, their ffmpeg is killed and their messages are
// requeued).
func (s *Service) Run(ctx context.Context, c Consumer) error {
	sweepScratch(ctx, s.opt.ScratchDir, s.d.Log)
	go s.dropVideos(ctx)
	opt := s.opt.Consume
	opt.MaxDeferrals, opt.OnRedeliveryLimit, opt.Log = s.maxDeferrals, s.redeliveryLimit, s.d.Log
	return c.Consume(ctx, s.opt.VideoQueue, opt, s.Handle)
}

// Outcomes of a job, the "result" label of conversions_total.
const (
	resultDone      = "done"      // converted, stored, published
	resultAlready   = "already"   // redelivery of a converted video: bookkeeping only
	resultFailed    = "failed"    // permanent failure, reported to the user
	resultRetry     = "retry"     // transient failure, retried by mq
	resultExhausted = "exhausted" // transient failure on the last attempt: reported, dead-lettered
	resultWithdrawn = "withdrawn" // the gateway answered the upload 503 after publishing: dropped
	// resultDeferred (lease.go): another converter holds the video's lease.
)

// Handle processes one message of VideoQueue (see the package comment). It
// returns nil once the MP3 is stored, the mp3 message is confirmed and the
// job is done; an error wrapping mq.ErrPermanent after a permanent failure
// was reported; one wrapping mq.ErrDeferred when another converter holds
// the video's lease (nothing is reported: that converter does); any other
// error to have the message retried.
func (s *Service) Handle(ctx context.Context, d mq.Delivery) error {
	start := time.Now()
	s.d.Metrics.begin()
	log := s.d.Log.With("message_id", d.MessageID, "attempt", d.Attempt)

	msg, err := message.Decode(d.Body)
	if err != nil {
		result := resultFailed
		err = s.malformed(ctx, log, d, err)
		if !errors.Is(err, mq.ErrPermanent) {
			result = resultRetry
		}
		s.d.Metrics.end(result, time.Since(start))
		return err
	}
	log = log.With("video_fid", msg.VideoFID)
	ctx = logging.Into(ctx, log)
	j := &job{msg: msg, log: log, attempt: d.Attempt}
	j.id, _ = bson.ObjectIDFromHex(msg.VideoFID) // Decode checked it

	result := resultRetry
	lctx, release, err := s.lease(ctx, j)
	if err == nil {
		j.lap("lease", start)
		defer release()
		result, err = s.handle(lctx, j)
		if err != nil && errors.Is(context.Cause(lctx), errLeaseLost) {
			err = fmt.Errorf("%w: %w: %w", errBusy, errLeaseLost, err)
		}
	}
	var pf *permanentError
	switch {
	case err == nil:
	case errors.Is(err, errBusy) && d.Deferrals < s.maxDeferrals:
		// Not a failure: whoever holds the video reports its outcome.
		result, err = resultDeferred, fmt.Errorf("%w: %w", mq.ErrDeferred, err)
	case errors.Is(err, errBusy):
		// Deferred for longer than a conversion can last: mq counts it as
		// a failed attempt from now on.
		log.Error("the video has been held by another converter for too long", "deferrals", d.Deferrals, "err", err)
		result = resultRetry
	case errors.As(err, &pf):
		log.Warn("conversion failed permanently", "reason", pf.reason, "err", pf.err)
		if rerr := s.reportFailure(lctx, j, pf.reason); rerr != nil {
			// Retry, to tell the user next time.
			result, err = resultRetry, fmt.Errorf("report failure %q: %w", pf.reason, rerr)
		} else {
			result = resultFailed
		}
	default:
		result = resultRetry
	}
	if result == resultRetry && d.LastAttempt && ctx.Err() == nil {
		// Last attempt: mq dead-letters the message after this; tell the
		// user now, best effort. (Not on a shutdown: that message is
		// requeued, not dead-lettered.)
		result = resultExhausted
		s.reportExhausted(ctx, j, d.Attempt)
	}
	s.d.Metrics.end(result, time.Since(start))
	if err != nil && result == resultFailed {
		return fmt.Errorf("%w: %w", mq.ErrPermanent, err)
	}
	if err == nil {
		log.Info("conversion done", append([]any{"result", result, "took", time.Since(start).Round(time.Millisecond).String()}, j.phases...)...)
	}
	return err
}

// reportExhausted tells the video's owner that the last attempt failed
// with a transient error, best effort.
func (s *Service) reportExhausted(ctx context.Context, j *job, attempts int) {
	reason := fmt.Sprintf("the conversion failed %d times because of a temporary error; an operator can retry it", attempts)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if j.stored == "" {
		// The attempts failed before the video was opened: its owner, not
		// the message, says whom to tell.
		if err := s.findOwner(ctx, j, gridfs.FileInfo{}, false); err != nil {
			j.log.Error("could not report the exhausted attempts", "err", err)
			return
		}
	}
	if err := s.reportFailure(ctx, j, reason); err != nil {
		j.log.Error("could not report the exhausted attempts", "err", err)
	}
}

// redeliveryLimit tells the user of a video whose message was
// dead-lettered because converters kept dying on it (mq's
// OnRedeliveryLimit); the job becomes failed. An operator can still replay
// the message from the dead-letter queue.
func (s *Service) redeliveryLimit(ctx context.Context, d mq.Delivery, reason string) {
	msg, err := message.Decode(d.Body)
	if err != nil {
		return // nobody to tell: malformed messages are never the ones that crash
	}
	j := &job{msg: msg, log: logging.From(ctx).With("video_fid", msg.VideoFID)}
	j.id, _ = bson.ObjectIDFromHex(msg.VideoFID)
	switch lctx, release, err := s.lease(ctx, j); {
	case errors.Is(err, errBusy):
		// A converter is working on the video (a duplicate message): it
		// reports the outcome, which this one must not contradict.
		j.log.Info("redelivery limit reached while another converter works on the video: nothing reported", "reason", reason)
		return
	case err != nil:
		j.log.Warn("could not take the video's lease at the redelivery limit; reporting all the same", "err", err)
	default:
		defer release()
		ctx = lctx
	}
	mp3, err := s.d.MP3s.Stat(ctx, j.id)
	if oerr := s.findOwner(ctx, j, mp3, err == nil); oerr != nil {
		// Nobody is told rather than maybe the wrong user; the message is
		// in the dead-letter queue.
		j.log.Error("could not look up the video's owner at the redelivery limit", "reason", reason, "err", oerr)
		return
	}
	if err == nil {
		// The MP3 was stored before the crashes: report that instead.
		if err := s.finish(ctx, j, true); err != nil {
			j.log.Error("could not finish a converted video at the redelivery limit", "reason", reason, "err", err)
		}
		return
	}
	text := "the conversion was interrupted again and again without finishing (a converter may crash on this file); an operator can retry it"
	if err := s.reportFailure(ctx, j, text); err != nil {
		j.log.Error("could not report the redelivery limit", "reason", reason, "err", err)
	}
}

// job is one message being handled.
type job struct {
	msg     message.Conversion
	id      bson.ObjectID
	log     *slog.Logger
	attempt int
	phases  []any  // name, duration pairs for the final log line
	stored  string // the owner stored with the video (or its MP3); "" if none
	// writer is this job's lease owner, and the name of its MP3 upload;
	// supersede is the lease holder it took over from (expired, or dead),
	// whose upload of the MP3, if any, is gone too.
	writer, supersede string
}

// owner is the user the MP3 belongs to and who is told about it: the owner
// stored with the video (by the gateway, at upload), else (a video stored
// by the original gateway, with no metadata) the message's username.
func (j *job) owner() string {
	if j.stored != "" {
		return j.stored
	}
	return j.msg.Username
}

// adoptOwner takes the owner recorded in a stored file's metadata (from is
// "video" or "mp3"). A message naming another user is logged, and
// overruled: whoever can publish to the queue does not decide who gets
// somebody else's MP3, or their email.
func (j *job) adoptOwner(meta bson.Raw, from string) {
	owner := ownerOf(meta)
	if owner == "" {
		return
	}
	if owner != j.msg.Username && j.msg.Username != "" {
		j.log.Warn("the message's username is not the video's owner: the owner is kept",
			"message_username", j.msg.Username, "owner", owner, "owner_from", from)
	}
	j.stored = owner
}

// ownerOf is a GridFS file's metadata.owner (what the gateway's /download
// checks), or "".
func ownerOf(meta bson.Raw) string {
	if meta == nil {
		return ""
	}
	v, err := meta.LookupErr("owner")
	if err != nil {
		return ""
	}
	s, _ := v.StringValueOK()
	return s
}

// findOwner sets j's stored owner from its MP3 (mp3, when haveMP3) or else
// its video, for the paths that do not open the video anyway. A video that
// is gone leaves the message's username.
func (s *Service) findOwner(ctx context.Context, j *job, mp3 gridfs.FileInfo, haveMP3 bool) error {
	if haveMP3 {
		j.adoptOwner(mp3.Metadata, "mp3")
		if j.stored != "" {
			return nil
		}
	}
	r, info, err := s.d.Videos.Open(ctx, j.id, 0)
	switch {
	case errors.Is(err, gridfs.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("look up the video's owner: %w", err)
	}
	r.Close()
	j.adoptOwner(info.Metadata, "video")
	return nil
}

// lap records how long a phase took since start and returns now.
func (j *job) lap(name string, start time.Time) time.Time {
	now := time.Now()
	j.phases = append(j.phases, name, now.Sub(start).Round(time.Millisecond).String())
	return now
}

func (j *job) fid() string { return j.msg.VideoFID }

// handle converts, stores and publishes; an error is a *permanentError or
// transient.
func (s *Service) handle(ctx context.Context, j *job) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opt.JobTimeout)
	defer cancel()
	t := time.Now()

	if withdrawn, err := s.withdrawn(ctx, j); err != nil || withdrawn {
		return resultWithdrawn, err
	}
	// A redelivery after the MP3 was stored: only the bookkeeping is left.
	switch mp3, err := s.d.MP3s.Stat(ctx, j.id); {
	case err == nil:
		if err := s.findOwner(ctx, j, mp3, true); err != nil {
			return "", err
		}
		return resultAlready, s.finish(ctx, j, true)
	case !errors.Is(err, gridfs.ErrNotFound):
		return "", fmt.Errorf("look for an existing mp3: %w", err)
	}

	var (
		src  io.ReadCloser
		ra   *gridfs.RandomAccess
		info gridfs.FileInfo
		err  error
	)
	if s.opt.SeekableInput {
		if ra, err = s.d.Videos.OpenRandom(ctx, j.id, gridfs.RandomOptions{}); err == nil {
			info = ra.Info()
			defer ra.Close()
		}
	} else {
		if src, info, err = s.d.Videos.Open(ctx, j.id, 0); err == nil {
			defer src.Close()
		}
	}
	switch {
	case errors.Is(err, gridfs.ErrNotFound):
		return "", permanent("the video was not found (it may have been deleted)", err)
	case err != nil:
		return "", fmt.Errorf("open video: %w", err)
	}
	j.adoptOwner(info.Metadata, "video")
	switch {
	case info.Length == 0:
		return "", permanent("the file is empty", nil)
	case info.Length > s.opt.MaxInputBytes:
		return "", permanent(fmt.Sprintf("the file is larger than the %s limit", logging.Bytes(s.opt.MaxInputBytes)),
			fmt.Errorf("%d bytes", info.Length))
	}
	if err := s.d.Jobs.Progress(ctx, j.fid(), 0); err != nil && !errors.Is(err, jobs.ErrNotFound) {
		return "", fmt.Errorf("mark job converting: %w", err)
	}
	j.log.Info("converting", "bytes", info.Length)
	j.lap("setup", t) // the checks, the video's document, the job marked converting

	name := mp3Name(j.msg.Filename, info, j.fid())
	switch {
	case ra == nil:
		_, err = s.convert(ctx, j, src, info, name)
	default:
		defer func() {
			read := ra.Fetched()
			j.phases = append(j.phases, "read_bytes", read, "read_ratio", math.Round(float64(read)/float64(info.Length)*1000)/1000,
				"read_queries", ra.Queries())
			s.d.Metrics.read(read, info.Length)
		}()
		head := make([]byte, min(info.Length, 64<<10))
		if _, err := ra.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read video: %w", err)
		}
		if _, err := refuseScripts(bytes.NewReader(head)); err != nil {
			return "", err
		}
		if !ffmpeg.Fragmented(head) {
			_, err = s.convertSeekable(ctx, j, ra, name)
		} else {
			// Measured (BenchmarkConvert, fragmented-1s): ffmpeg opening a
			// fragmented MP4 seeks over every fragment, which costs more on
			// FerretDB than reading the file once: it streams as before (a
			// temporary file), from the same chunks.
			_, err = s.convert(ctx, j, ra.NewReader(), info, name)
		}
	}
	switch {
	case errors.Is(err, gridfs.ErrExists):
		// Another converter stored it meanwhile (a duplicate delivery).
		j.log.Info("mp3 stored meanwhile by another converter")
		return resultAlready, s.finish(ctx, j, true)
	case errors.Is(err, gridfs.ErrConflict):
		// Another writer of this MP3 (one whose lease was lost, or one that
		// died while writing: its claim expires) is still on record.
		return "", fmt.Errorf("%w: %w", errBusy, err)
	case err != nil:
		return "", err
	}
	// The gateway may have withdrawn the upload while it was converting.
	t = time.Now()
	defer func() { j.lap("report", t) }() // the mp3 message confirmed, the job done
	if withdrawn, err := s.withdrawn(ctx, j); err != nil || withdrawn {
		return resultWithdrawn, err
	}
	return resultDone, s.finish(ctx, j, false)
}

// withdrawn reports whether the gateway withdrew j's upload (it answered
// the client 503 because the broker confirmed the message too late; see
// jobs.Withdrawn). Such a message is dropped without a word to the user,
// who was told the upload failed: whatever it left (the video, an MP3
// just made) is removed.
func (s *Service) withdrawn(ctx context.Context, j *job) (bool, error) {
	jb, err := s.d.Jobs.Get(ctx, j.fid())
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("get job: %w", err)
	case jb.Status != jobs.Withdrawn:
		return false, nil
	}
	for what, del := range map[string]func(context.Context, bson.ObjectID) error{"video": s.d.Videos.Delete, "mp3": s.d.MP3s.Delete} {
		if err := del(ctx, j.id); err != nil && !errors.Is(err, gridfs.ErrNotFound) {
			return false, fmt.Errorf("remove the %s of a withdrawn upload: %w", what, err)
		}
	}
	j.log.Info("upload withdrawn by the gateway (answered 503): message dropped, nothing reported")
	return true, nil
}

// finish publishes the success message, then marks the job done. When the
// MP3 was there already (a redelivery), a job that is done already had its
// message published (publish comes before done), so it is not sent twice.
func (s *Service) finish(ctx context.Context, j *job, already bool) error {
	fid := j.fid()
	if already {
		jb, err := s.d.Jobs.Get(ctx, fid)
		switch {
		case err == nil && jb.Status == jobs.Done && jb.MP3FID != nil && *jb.MP3FID == fid:
			j.log.Info("already converted and reported: nothing to do")
			return nil
		case err != nil && !errors.Is(err, jobs.ErrNotFound):
			return fmt.Errorf("get job: %w", err)
		}
	}
	out := message.Conversion{VideoFID: fid, MP3FID: &fid, Username: j.owner(), Filename: j.msg.Filename}
	if err := s.d.Publisher.Publish(ctx, s.opt.MP3Queue, mq.Message{Body: out.Encode(), MessageID: fid}); err != nil {
		return fmt.Errorf("publish mp3 message: %w", err)
	}
	if err := s.d.Jobs.Done(ctx, fid, fid); err != nil && !errors.Is(err, jobs.ErrNotFound) {
		return fmt.Errorf("mark job done: %w", err)
	}
	if !s.opt.KeepVideos {
		select {
		case s.drops <- j: // removed after the ack, see dropVideos
		default: // too many waiting: the sweeper takes it
		}
	}
	return nil
}

// dropVideos removes the videos handed over by finish, one at a time,
// until ctx ends: those left then, the retention sweeper removes.
func (s *Service) dropVideos(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.drops:
			s.dropVideo(ctx, j)
		}
	}
}

// dropVideo removes the video of a job whose MP3 is stored and announced.
// Best effort: what it cannot remove, the retention sweeper removes later
// (retention.doneVideoGrace after the job is done).
func (s *Service) dropVideo(ctx context.Context, j *job) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	err := s.d.Videos.Delete(ctx, j.id)
	if err == nil || errors.Is(err, gridfs.ErrNotFound) {
		err = s.d.Jobs.VideoDeleted(ctx, j.fid())
	}
	if err != nil && !errors.Is(err, jobs.ErrNotFound) {
		j.log.Warn("video not removed after its MP3 was stored (the sweeper will)", "err", err)
	}
}

// reportFailure tells the user: a message with Error on MP3_QUEUE, then the
// job marked failed (a done job stays done).
func (s *Service) reportFailure(ctx context.Context, j *job, reason string) error {
	if strings.TrimSpace(j.owner()) != "" {
		out := message.Conversion{VideoFID: j.fid(), Username: j.owner(), Filename: j.msg.Filename, Error: reason}
		if err := s.d.Publisher.Publish(ctx, s.opt.MP3Queue, mq.Message{Body: out.Encode(), MessageID: j.fid()}); err != nil {
			return fmt.Errorf("publish failure message: %w", err)
		}
	}
	if err := s.d.Jobs.Failed(ctx, j.fid(), reason); err != nil && !errors.Is(err, jobs.ErrNotFound) {
		return fmt.Errorf("mark job failed: %w", err)
	}
	return nil
}

// malformed handles a message Decode refused. Its fields are read leniently:
// with a valid video_fid the job is marked failed and, with a username (from
// the message or the job), the user is told. Without one there is nobody to
// tell and nothing to mark: it is logged and dropped.
func (s *Service) malformed(ctx context.Context, log *slog.Logger, d mq.Delivery, derr error) error {
	var loose struct {
		VideoFID any    `json:"video_fid"`
		Username any    `json:"username"`
		Filename string `json:"filename"`
	}
	_ = json.Unmarshal(d.Body, &loose)
	fid, _ := loose.VideoFID.(string)
	user, _ := loose.Username.(string)
	if !message.IsObjectID(fid) {
		log.Error("malformed message dropped: no valid video_fid, nobody to tell",
			"err", derr, "body", logging.Clip(string(d.Body), 200))
		return fmt.Errorf("%w: %w", mq.ErrPermanent, derr)
	}
	log = log.With("video_fid", fid)
	j := &job{msg: message.Conversion{VideoFID: fid, Username: user, Filename: loose.Filename}, log: log}
	j.id, _ = bson.ObjectIDFromHex(fid)
	if err := s.findOwner(ctx, j, gridfs.FileInfo{}, false); err != nil {
		return err
	}
	if strings.TrimSpace(j.owner()) == "" {
		jb, err := s.d.Jobs.Get(ctx, fid)
		switch {
		case err == nil:
			j.msg.Username = jb.Username
			if j.msg.Filename == "" {
				j.msg.Filename = jb.Filename
			}
		case !errors.Is(err, jobs.ErrNotFound):
			return fmt.Errorf("look up the job of a malformed message: %w", err)
		}
	}
	log.Error("malformed message", "err", derr, "body", logging.Clip(string(d.Body), 200))
	if err := s.reportFailure(ctx, j, "the conversion request was malformed"); err != nil {
		return err
	}
	return fmt.Errorf("%w: %w", mq.ErrPermanent, derr)
}

// permanentError is a failure retrying cannot fix; reason is for the user.
type permanentError struct {
	reason string
	err    error
}

func permanent(reason string, err error) error { return &permanentError{reason: reason, err: err} }

func (e *permanentError) Error() string {
	if e.err == nil {
		return e.reason
	}
	return e.reason + ": " + e.err.Error()
}

func (e *permanentError) Unwrap() []error {
	if e.err == nil {
		return []error{mq.ErrPermanent}
	}
	return []error{mq.ErrPermanent, e.err}
}

// mp3Meta is the MP3's GridFS metadata. The gateway's download checks owner.
type mp3Meta struct {
	Owner    string  `bson:"owner"`
	VideoFID string  `bson:"video_fid"`
	Filename string  `bson:"filename"`
	Duration float64 `bson:"duration"` // seconds: the MP3's length
	Bitrate  int     `bson:"bitrate"`  // bits per second
	Codec    string  `bson:"source_codec"`
	Copied   bool    `bson:"copied"` // the source audio was MP3, copied without re-encoding
}

// mp3Name is "<base name of the original>.mp3", from the message, else the
// video's metadata or files document, else the file ID.
func mp3Name(fromMsg string, info gridfs.FileInfo, fid string) string {
	name := fromMsg
	if name == "" && info.Metadata != nil {
		if v, ok := info.Metadata.Lookup("filename").StringValueOK(); ok {
			name = v
		}
	}
	if name == "" {
		name = info.Name
	}
	name = message.Filename(name)
	name = strings.TrimSuffix(name, path.Ext(name))
	if name == "" {
		name = fid
	}
	return name + ".mp3"
}
