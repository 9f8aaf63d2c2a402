// Package jobs keeps the conversion job records: the gateway creates one per
// uploaded video, the converter moves it through its states, the gateway lists
// them for their owner. Records live in the collection "jobs" (database
// "videos"); a job's ID is its video's GridFS ObjectID in hex, the video_fid
// of the queue message, so the converter finds the job from the message.
//
// Beside the jobs, the collection "leases" holds the converters' leases
// (see TakeLease): while a converter works on a video it holds that video's
// lease, so that a second converter handed the same video (a duplicate or
// redelivered message) waits instead of converting it too.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Status is where a job stands.
type Status string

// The states of a job: queued → converting → done or failed.
const (
	Queued     Status = "queued"
	Converting Status = "converting"
	Done       Status = "done"
	Failed     Status = "failed"
	// Withdrawn is an upload the gateway gave up on after it had
	// published the message (the broker did not confirm in time, and the
	// client was told 503): the message may still arrive, and the
	// converter drops it. Hidden from the owner; the record stays as a
	// tombstone until the sweeper removes it.
	Withdrawn Status = "withdrawn"
)

// Collection is the name of the jobs collection.
const Collection = "jobs"

// Sentinel errors of the store.
var (
	ErrNotFound = errors.New("job not found")
	ErrExists   = errors.New("job already exists")
	errNoID     = errors.New("job event without an id")
)

// Job is one conversion, as stored and as the gateway's /jobs answers it.
type Job struct {
	ID        string    `json:"id" bson:"_id"`
	Username  string    `json:"-" bson:"username"`
	Filename  string    `json:"filename" bson:"filename"`
	Status    Status    `json:"status" bson:"status"`
	Progress  int       `json:"progress" bson:"progress"`
	VideoFID  string    `json:"video_fid" bson:"video_fid"`
	MP3FID    *string   `json:"mp3_fid" bson:"mp3_fid"`
	Error     string    `json:"error" bson:"error"`
	CreatedAt time.Time `json:"created_at" bson:"created_at"`
	UpdatedAt time.Time `json:"updated_at" bson:"updated_at"`
	// ExpiredAt is when the MP3 was deleted after MP3_RETENTION (null
	// while it is kept); its download then answers 410.
	ExpiredAt *time.Time `json:"expired_at" bson:"expired_at,omitempty"`
}

// Store keeps jobs in MongoDB.
type Store struct {
	c        *mongo.Collection
	leases   *mongo.Collection
	now      func() time.Time
	announce func(context.Context, Event) // see OnChange
}

// NewStore returns the store of db's "jobs" collection, creating its index
// {username:1, created_at:-1} (for List) when missing.
func NewStore(db *mongo.Database) (*Store, error) {
	if db == nil {
		return nil, errors.New("jobs: nil database")
	}
	s := &Store{
		c:      db.Collection(Collection),
		leases: db.Collection(LeaseCollection),
		now:    func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	model := mongo.IndexModel{Keys: bson.D{{Key: "username", Value: 1}, {Key: "created_at", Value: -1}}}
	if _, err := s.c.Indexes().CreateOne(ctx, model); err != nil {
		return nil, fmt.Errorf("jobs: create index: %w", err)
	}
	return s, nil
}

// Create stores a new job. Empty Status means Queued; zero times mean now.
// A job with the same ID gives ErrExists.
func (s *Store) Create(ctx context.Context, j Job) error {
	if j.ID == "" {
		return errors.New("create job: empty id")
	}
	now := s.now()
	if j.Status == "" {
		j.Status = Queued
	}
	if j.CreatedAt.IsZero() {
		j.CreatedAt = now
	}
	if j.UpdatedAt.IsZero() {
		j.UpdatedAt = j.CreatedAt
	}
	if _, err := s.c.InsertOne(ctx, j); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("create job %s: %w", j.ID, ErrExists)
		}
		return fmt.Errorf("create job %s: %w", j.ID, err)
	}
	s.changed(ctx, Event{ID: j.ID, Username: j.Username, Status: j.Status, Progress: j.Progress})
	return nil
}

// Get returns the job with id.
func (s *Store) Get(ctx context.Context, id string) (Job, error) {
	var j Job
	err := s.c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&j)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Job{}, fmt.Errorf("get job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Job{}, fmt.Errorf("get job %s: %w", id, err)
	}
	return j, nil
}

// List returns username's jobs, newest first, at most limit of them
// (limit ≤ 0: all). With before (a job ID of username's), the list starts
// after that job: the next page. An unknown before (or another user's) is
// ErrNotFound.
func (s *Store) List(ctx context.Context, username string, limit int, before string) ([]Job, error) {
	opts := options.Find().SetSort(bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: -1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	filter := bson.D{{Key: "username", Value: username}, {Key: "status", Value: bson.D{{Key: "$ne", Value: Withdrawn}}}}
	if before != "" {
		last, err := s.Get(ctx, before)
		if err == nil && last.Username != username {
			err = fmt.Errorf("list jobs of %s after %s: %w", username, before, ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "created_at", Value: bson.D{{Key: "$lt", Value: last.CreatedAt}}}},
			bson.D{{Key: "created_at", Value: last.CreatedAt}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: last.ID}}}},
		}})
	}
	cur, err := s.c.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("list jobs of %s: %w", username, err)
	}
	out := []Job{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list jobs of %s: %w", username, err)
	}
	return out, nil
}

// CountActive is the number of username's jobs that are queued or
// converting.
func (s *Store) CountActive(ctx context.Context, username string) (int64, error) {
	n, err := s.c.CountDocuments(ctx, bson.D{{Key: "username", Value: username},
		{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{Queued, Converting}}}}})
	if err != nil {
		return 0, fmt.Errorf("count active jobs of %s: %w", username, err)
	}
	return n, nil
}

// Delete removes the job with id.
func (s *Store) Delete(ctx context.Context, id string) error {
	res, err := s.c.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("delete job %s: %w", id, ErrNotFound)
	}
	return nil
}

// Withdraw marks a queued job Withdrawn (see Withdrawn).
func (s *Store) Withdraw(ctx context.Context, id string) error {
	return s.update(ctx, "withdraw", id, bson.D{{Key: "status", Value: Queued}},
		bson.D{{Key: "status", Value: Withdrawn}})
}

// Progress marks the job converting at pct percent (clamped to 0..100). A job
// already done or failed is left as it is.
func (s *Store) Progress(ctx context.Context, id string, pct int) error {
	pct = min(max(pct, 0), 100)
	return s.update(ctx, "progress", id,
		bson.D{{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{Queued, Converting}}}}},
		bson.D{{Key: "status", Value: Converting}, {Key: "progress", Value: pct}})
}

// Done marks the job done with its MP3's file ID, whatever its state (an MP3
// stored after a failure report, on a retry, is still the truth), unless
// it was withdrawn.
func (s *Store) Done(ctx context.Context, id, mp3FID string) error {
	return s.update(ctx, "done", id, bson.D{{Key: "status", Value: bson.D{{Key: "$ne", Value: Withdrawn}}}},
		bson.D{{Key: "status", Value: Done}, {Key: "progress", Value: 100}, {Key: "mp3_fid", Value: mp3FID}, {Key: "error", Value: ""}})
}

// Finish marks the job done with its MP3's file ID unless it is done with
// that MP3 already, in which case nothing is written (updated_at is kept).
// The notification service records this way the MP3s that the original
// converter announces; like Done, it overrides any other state.
func (s *Store) Finish(ctx context.Context, id, mp3FID string) error {
	return s.update(ctx, "finish", id,
		bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "status", Value: bson.D{{Key: "$ne", Value: Done}}}},
			bson.D{{Key: "mp3_fid", Value: bson.D{{Key: "$ne", Value: mp3FID}}}},
		}}},
		bson.D{{Key: "status", Value: Done}, {Key: "progress", Value: 100}, {Key: "mp3_fid", Value: mp3FID}, {Key: "error", Value: ""}})
}

// Failed marks the job failed with reason, unless it is done.
func (s *Store) Failed(ctx context.Context, id, reason string) error {
	return s.update(ctx, "fail", id,
		bson.D{{Key: "status", Value: bson.D{{Key: "$ne", Value: Done}}}},
		bson.D{{Key: "status", Value: Failed}, {Key: "error", Value: reason}})
}

// update sets fields on job id when it also matches guard. A job that exists
// but does not match the guard is left unchanged without error; a missing
// job is ErrNotFound.
func (s *Store) update(ctx context.Context, what, id string, guard, set bson.D) error {
	filter := append(bson.D{{Key: "_id", Value: id}}, guard...)
	set = append(set, bson.E{Key: "updated_at", Value: s.now()})
	res, err := s.c.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("%s job %s: %w", what, id, err)
	}
	if res.MatchedCount > 0 {
		e := Event{ID: id}
		for _, f := range set {
			switch f.Key {
			case "status":
				e.Status, _ = f.Value.(Status)
			case "progress":
				e.Progress, _ = f.Value.(int)
			}
		}
		if e.Status != "" { // a bookkeeping write (video_deleted) is no change to tell
			s.changed(ctx, e)
		}
		return nil
	}
	if len(guard) == 0 {
		return fmt.Errorf("%s job %s: %w", what, id, ErrNotFound)
	}
	n, err := s.c.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return fmt.Errorf("%s job %s: %w", what, id, err)
	}
	if n == 0 {
		return fmt.Errorf("%s job %s: %w", what, id, ErrNotFound)
	}
	return nil
}
