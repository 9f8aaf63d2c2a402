package retention

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
)

// The removals the sweeper makes, shared with the gateway's DELETE
// /jobs/{id}: one way to delete a job's files.
type (
	// FileDeleter removes one file of a GridFS bucket (*gridfs.Bucket).
	FileDeleter interface {
		Delete(ctx context.Context, id bson.ObjectID) error
	}
	// JobDeleter removes one job record (*jobs.Store).
	JobDeleter interface {
		Delete(ctx context.Context, id string) error
	}
)

// RemoveFile removes file fid (hex) from b. A file already gone is fine,
// and so is an fid that is no ObjectID (not a file of ours).
func RemoveFile(ctx context.Context, b FileDeleter, fid string) error {
	id, err := bson.ObjectIDFromHex(fid)
	if err != nil {
		return nil
	}
	if err := b.Delete(ctx, id); err != nil && !errors.Is(err, gridfs.ErrNotFound) {
		return fmt.Errorf("remove file %s: %w", fid, err)
	}
	return nil
}

// DeleteJob removes job j's video and MP3, whichever are still stored,
// then its record. The files go first: a deletion cut short leaves a job
// that a second try deletes, never a file no record points at. A job
// already gone is fine.
func DeleteJob(ctx context.Context, videos, mp3s FileDeleter, js JobDeleter, j jobs.Job) error {
	if err := RemoveFile(ctx, videos, j.VideoFID); err != nil {
		return fmt.Errorf("delete job %s: video: %w", j.ID, err)
	}
	if j.MP3FID != nil {
		if err := RemoveFile(ctx, mp3s, *j.MP3FID); err != nil {
			return fmt.Errorf("delete job %s: mp3: %w", j.ID, err)
		}
	}
	if err := js.Delete(ctx, j.ID); err != nil && !errors.Is(err, jobs.ErrNotFound) {
		return err
	}
	return nil
}
