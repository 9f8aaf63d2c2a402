// Package retention keeps storage from only growing: a sweeper removes
// the videos nobody needs any more and, after a configured retention, the
// MP3s, leaving a tombstone per expired MP3 so that its download answers
// 410 and its job says when it expired.
//
// The converter runs the sweeper. With several replicas, one at a time
// sweeps (the lease "retention-sweeper" among the job leases); every step
// is idempotent anyway, so two sweepers at once would only do the same
// work twice.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/logging"
)

// Config is the sweeper's configuration (read by the converter).
type Config struct {
	// KeepVideos keeps a video after its MP3 is stored (the original's
	// behaviour); by default it is removed at once.
	KeepVideos bool `env:"KEEP_VIDEOS" envDefault:"false"`
	// FailedVideoGrace is how long a failed conversion's video is kept,
	// for an operator to look at or replay.
	FailedVideoGrace time.Duration `env:"FAILED_VIDEO_GRACE" envDefault:"24h"`
	// MP3Retention is how long an MP3 is kept; 0 keeps them for ever, as
	// the original did.
	MP3Retention time.Duration `env:"MP3_RETENTION" envDefault:"0"`
	// SweepInterval is the time between two sweeps.
	SweepInterval time.Duration `env:"SWEEP_INTERVAL" envDefault:"10m"`
}

// Validate checks the values.
func (c Config) Validate() error {
	switch {
	case c.FailedVideoGrace < 0:
		return errors.New("FAILED_VIDEO_GRACE must not be negative")
	case c.MP3Retention < 0:
		return errors.New("MP3_RETENTION must not be negative (0 keeps MP3s for ever)")
	case c.SweepInterval < time.Second:
		return errors.New("SWEEP_INTERVAL must be at least 1s")
	}
	return nil
}

// Withdrawn uploads' tombstones (see jobs.Withdrawn) are kept this long:
// far longer than a message can wait in the queue.
const withdrawnKept = 7 * 24 * time.Hour

// A done job's video is left this long to the converter, which removes it
// itself right after the MP3 is stored; the sweeper takes the ones a
// converter that died in between left.
const doneVideoGrace = 10 * time.Minute

// Tombstones of expired MP3s are forgotten after this long (a download
// then answers 404).
const tombstonesKept = 365 * 24 * time.Hour

// batch is how many records one step handles at a time.
const batch = 200

// Deps are the stores the sweeper works on.
type Deps struct {
	Videos, MP3s *gridfs.Bucket
	Jobs         *jobs.Store
	Tombstones   *Tombstones
	Log          *slog.Logger
}

// leaseID is the sweeper's lease among the job leases (jobs.TakeLease).
const leaseID = "retention-sweeper"

// Report counts what one sweep did.
type Report struct {
	DoneVideos, FailedVideos, Withdrawn, ExpiredMP3s, Tombstones, Uploads int
}

func (r Report) empty() bool { return r == Report{} }

// Sweeper removes what is no longer needed.
type Sweeper struct {
	d      Deps
	cfg    Config
	holder jobs.Holder // of the lease: host and process
	now    func() time.Time
}

// New returns a Sweeper.
func New(d Deps, cfg Config) (*Sweeper, error) {
	if d.Videos == nil || d.MP3s == nil || d.Jobs == nil || d.Tombstones == nil || d.Log == nil {
		return nil, errors.New("retention: missing dependency")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	h := jobs.Holder{Owner: fmt.Sprintf("sweeper/%s/%d/%s", host, os.Getpid(), logging.NewID()), Host: host, PID: os.Getpid()}
	return &Sweeper{d: d, cfg: cfg, holder: h, now: time.Now}, nil
}

// Run sweeps every SweepInterval (the first time soon after start) until
// ctx ends, when this process holds the lease.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTimer(min(s.cfg.SweepInterval, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(s.cfg.SweepInterval)
		held, err := s.lease(ctx)
		switch {
		case err != nil:
			s.d.Log.Warn("retention: could not take the sweeper's lease", "err", err)
			continue
		case !held:
			continue // another replica sweeps
		}
		rep, err := s.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.d.Log.Warn("retention: sweep stopped", "err", err, "done", rep)
		} else if !rep.empty() {
			s.d.Log.Info("retention: swept", "done_videos", rep.DoneVideos, "failed_videos", rep.FailedVideos,
				"withdrawn", rep.Withdrawn, "expired_mp3s", rep.ExpiredMP3s, "tombstones", rep.Tombstones, "expired_uploads", rep.Uploads)
		}
	}
}

// lease takes or renews the sweeper's lease for one interval: a replica
// that dies gives way to another after that.
func (s *Sweeper) lease(ctx context.Context) (bool, error) {
	_, err := s.d.Jobs.TakeLease(ctx, leaseID, s.holder, s.cfg.SweepInterval, nil)
	if errors.Is(err, jobs.ErrLeased) {
		return false, nil // another replica sweeps
	}
	if err != nil {
		return false, fmt.Errorf("sweeper lease: %w", err)
	}
	return true, nil
}

// Sweep does one pass: the videos of done jobs (unless KeepVideos), of
// failed jobs past the grace, withdrawn uploads' tombstones, expired MP3s
// (with MP3Retention), old tombstones, and resumable uploads past their
// expiry.
func (s *Sweeper) Sweep(ctx context.Context) (Report, error) {
	var rep Report
	now := s.now()
	var err error
	if !s.cfg.KeepVideos {
		if rep.DoneVideos, err = s.videos(ctx, jobs.Done, now.Add(-doneVideoGrace), false); err != nil {
			return rep, err
		}
	}
	if rep.FailedVideos, err = s.videos(ctx, jobs.Failed, now.Add(-s.cfg.FailedVideoGrace), false); err != nil {
		return rep, err
	}
	if rep.Withdrawn, err = s.videos(ctx, jobs.Withdrawn, now.Add(-withdrawnKept), true); err != nil {
		return rep, err
	}
	if s.cfg.MP3Retention > 0 {
		if rep.ExpiredMP3s, err = s.expire(ctx, now); err != nil {
			return rep, err
		}
	}
	// Resumable uploads past their expiry (see gridfs.Partial).
	for {
		n, err := s.d.Videos.ExpirePartials(ctx, now, batch)
		rep.Uploads += n
		if err != nil || n < batch {
			if err != nil {
				return rep, err
			}
			break
		}
	}
	n, err := s.d.Tombstones.forget(ctx, now.Add(-tombstonesKept))
	rep.Tombstones = int(n)
	return rep, err
}

// videos removes the videos of jobs in status last updated before before
// (and the job itself with dropJob).
func (s *Sweeper) videos(ctx context.Context, status jobs.Status, before time.Time, dropJob bool) (int, error) {
	n := 0
	for {
		list, err := s.d.Jobs.Stale(ctx, status, before, batch)
		if err != nil {
			return n, err
		}
		for _, j := range list {
			if dropJob {
				err = DeleteJob(ctx, s.d.Videos, s.d.MP3s, s.d.Jobs, j)
			} else if err = s.removeVideo(ctx, j.VideoFID); err == nil {
				err = s.d.Jobs.VideoDeleted(ctx, j.ID)
			}
			if err != nil {
				return n, err
			}
			n++
		}
		if len(list) < batch {
			return n, nil
		}
	}
}

// removeVideo removes video fid (hex); a video already gone is fine.
func (s *Sweeper) removeVideo(ctx context.Context, fid string) error {
	return RemoveFile(ctx, s.d.Videos, fid)
}

// expire deletes the MP3s older than MP3Retention: first the tombstone and
// the job's expired_at, then the file, so that a sweep cut short leaves an
// MP3 that still downloads and is swept next time, never a 404.
func (s *Sweeper) expire(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.Add(-s.cfg.MP3Retention)
	n := 0
	for {
		list, err := s.d.MP3s.FindLimit(ctx, bson.D{{Key: "uploadDate", Value: bson.D{{Key: "$lt", Value: cutoff}}}}, batch)
		if err != nil {
			return n, err
		}
		for _, f := range list {
			owner := ""
			if f.Metadata != nil {
				owner, _ = f.Metadata.Lookup("owner").StringValueOK()
			}
			if err := s.d.Tombstones.Add(ctx, Tombstone{ID: f.ID, Owner: owner, UploadedAt: f.UploadDate, ExpiredAt: now}); err != nil {
				return n, err
			}
			if err := s.d.Jobs.MarkExpired(ctx, f.ID.Hex(), now); err != nil {
				return n, err
			}
			if err := s.d.MP3s.Delete(ctx, f.ID); err != nil && !errors.Is(err, gridfs.ErrNotFound) {
				return n, fmt.Errorf("remove expired mp3 %s: %w", f.ID.Hex(), err)
			}
			n++
		}
		if len(list) < batch {
			return n, nil
		}
	}
}
