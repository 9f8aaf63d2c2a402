package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/message"
)

// jobStore is what Recorder needs of the job records; *jobs.Store has it.
type jobStore interface {
	Get(ctx context.Context, id string) (jobs.Job, error)
	Finish(ctx context.Context, id, mp3FID string) error
}

// ownerStore is what Recorder needs of the MP3s' GridFS bucket;
// *gridfs.Bucket has it.
type ownerStore interface {
	SetMetadataIfAbsent(ctx context.Context, id bson.ObjectID, key string, value any) (bool, error)
}

// Recorder writes down the outcome an MP3 message announces, before the
// user is emailed, so that a user downloads their own MP3 and sees the job
// done whichever converter made it. The Go converter records both itself;
// the original converter stores the MP3 under a new id with no metadata and
// touches no job, which leaves the Go gateway's job queued for ever and the
// download (owner-checked) answering 404 to the owner.
//
// For a success message Record
//
//  1. marks the job (id = video_fid) done with the mp3_fid unless it is done
//     with it already (no write then); a video without a job (uploaded
//     through the original gateway) is skipped;
//  2. gives the MP3 an owner when it has none: the job's username (the
//     video's owner; the message's username is only trusted when there is no
//     job, since anyone who may publish to the queue could name someone
//     else). An existing owner is never overwritten.
//
// Both steps are idempotent: a redelivered message changes nothing. A
// failure message needs nothing (the Go converter marks the job failed).
type Recorder struct {
	jobs jobStore
	mp3s ownerStore
}

// NewRecorder returns a Recorder over the job records and the MP3s' bucket.
func NewRecorder(j jobStore, mp3s ownerStore) (*Recorder, error) {
	if j == nil || mp3s == nil {
		return nil, errors.New("notification: nil job store or mp3 bucket")
	}
	return &Recorder{jobs: j, mp3s: mp3s}, nil
}

// Record records m (see Recorder). Its errors are MongoDB's: transient.
func (r *Recorder) Record(ctx context.Context, log *slog.Logger, m message.Conversion) error {
	if m.MP3FID == nil {
		return nil
	}
	mp3FID := *m.MP3FID
	mp3ID, err := bson.ObjectIDFromHex(mp3FID)
	if err != nil {
		// message.Decode checked it: a caller's bug.
		return fmt.Errorf("record: mp3_fid %q: %w", mp3FID, err)
	}
	owner := m.Username
	job, err := r.jobs.Get(ctx, m.VideoFID)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		log.Debug("no job for this video (uploaded through the original gateway?): owner from the message")
	case err != nil:
		return fmt.Errorf("record: %w", err)
	default:
		if job.Username != "" {
			owner = job.Username
		}
		if job.Status != jobs.Done || job.MP3FID == nil || *job.MP3FID != mp3FID {
			if err := r.jobs.Finish(ctx, m.VideoFID, mp3FID); err != nil && !errors.Is(err, jobs.ErrNotFound) {
				return fmt.Errorf("record: %w", err)
			}
			log.Info("job marked done", "was", job.Status)
		}
	}
	set, err := r.mp3s.SetMetadataIfAbsent(ctx, mp3ID, "owner", owner)
	switch {
	case errors.Is(err, gridfs.ErrNotFound):
		log.Warn("the announced mp3 is not in the mp3s bucket: no owner recorded")
	case err != nil:
		return fmt.Errorf("record mp3 owner: %w", err)
	case set:
		log.Info("mp3 had no owner: recorded the video's owner", "owner", owner)
	}
	return nil
}
