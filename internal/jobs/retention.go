package jobs

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The queries of the retention sweeper (internal/retention).

// Stale returns at most limit jobs in status, last updated before before,
// whose video was not yet removed, oldest first.
func (s *Store) Stale(ctx context.Context, status Status, before time.Time, limit int) ([]Job, error) {
	filter := bson.D{{Key: "status", Value: status}, {Key: "updated_at", Value: bson.D{{Key: "$lt", Value: before}}},
		{Key: "video_deleted", Value: bson.D{{Key: "$ne", Value: true}}}}
	cur, err := s.c.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "updated_at", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("stale %s jobs: %w", status, err)
	}
	out := []Job{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("stale %s jobs: %w", status, err)
	}
	return out, nil
}

// VideoDeleted notes that job id's video was removed (the MP3 is stored,
// or the job failed long enough ago).
func (s *Store) VideoDeleted(ctx context.Context, id string) error {
	_, err := s.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "video_deleted", Value: true}}}})
	if err != nil {
		return fmt.Errorf("note video of job %s deleted: %w", id, err)
	}
	return nil
}

// MarkExpired notes on the job of MP3 mp3FID (its id, or its mp3_fid for
// an MP3 the original converter made) that the MP3 expired at.
func (s *Store) MarkExpired(ctx context.Context, mp3FID string, at time.Time) error {
	_, err := s.c.UpdateMany(ctx, bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "_id", Value: mp3FID}}, bson.D{{Key: "mp3_fid", Value: mp3FID}},
	}}}, bson.D{{Key: "$set", Value: bson.D{{Key: "expired_at", Value: at.UTC().Truncate(time.Millisecond)}}}})
	if err != nil {
		return fmt.Errorf("mark mp3 %s expired: %w", mp3FID, err)
	}
	s.changed(ctx, Event{ID: mp3FID, Status: Done, Progress: 100}) // the job of an MP3 of ours has its id
	return nil
}
