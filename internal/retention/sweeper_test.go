package retention

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/testenv"
)

type fixture struct {
	deps     Deps
	videosDB *mongo.Database
	t        *testing.T
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	videosDB, mp3sDB := testenv.Mongo(t), testenv.Mongo(t)
	videos, err := gridfs.NewBucket(videosDB)
	if err != nil {
		t.Fatal(err)
	}
	mp3s, err := gridfs.NewBucket(mp3sDB)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jobs.NewStore(videosDB)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testenv.Logger(t)
	return &fixture{t: t, videosDB: videosDB, deps: Deps{Videos: videos, MP3s: mp3s, Jobs: js, Tombstones: NewTombstones(mp3sDB), Log: log}}
}

func (f *fixture) sweeper(cfg Config, now time.Time) *Sweeper {
	f.t.Helper()
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Minute
	}
	s, err := New(f.deps, cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	s.now = func() time.Time { return now }
	return s
}

// upload stores a video (and a job in status for it; "" none) and, with
// mp3, an MP3 under the same id owned by owner. It returns the id.
func (f *fixture) upload(status jobs.Status, mp3 bool, owner string) string {
	f.t.Helper()
	ctx := context.Background()
	v, err := f.deps.Videos.Upload(ctx, "v.mp4", bytes.NewReader([]byte("video")), bson.D{{Key: "owner", Value: owner}}, gridfs.UploadOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	fid := v.ID.Hex()
	if status != "" {
		j := jobs.Job{ID: fid, Username: owner, Status: status, VideoFID: fid}
		if mp3 {
			j.MP3FID = &fid
		}
		if err := f.deps.Jobs.Create(ctx, j); err != nil {
			f.t.Fatal(err)
		}
	}
	if mp3 {
		if _, err := f.deps.MP3s.Upload(ctx, "v.mp3", bytes.NewReader([]byte("mp3")), bson.D{{Key: "owner", Value: owner}},
			gridfs.UploadOptions{ID: v.ID}); err != nil {
			f.t.Fatal(err)
		}
	}
	return fid
}

func (f *fixture) exists(b *gridfs.Bucket, fid string) bool {
	f.t.Helper()
	id, _ := bson.ObjectIDFromHex(fid)
	_, err := b.Stat(context.Background(), id)
	if err != nil && !errors.Is(err, gridfs.ErrNotFound) {
		f.t.Fatal(err)
	}
	return err == nil
}

func (f *fixture) job(fid string) (jobs.Job, bool) {
	f.t.Helper()
	j, err := f.deps.Jobs.Get(context.Background(), fid)
	if errors.Is(err, jobs.ErrNotFound) {
		return jobs.Job{}, false
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return j, true
}

func TestSweep(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	done := f.upload(jobs.Done, true, "a@example.com")
	failed := f.upload(jobs.Failed, false, "a@example.com")
	withdrawn := f.upload(jobs.Withdrawn, false, "a@example.com")
	queued := f.upload(jobs.Queued, false, "a@example.com")
	originalMP3 := f.upload("", true, "") // no job, no owner: the original's
	// A resumable upload abandoned half-way, expiring in 12 hours.
	partial, err := f.deps.Videos.CreatePartial(ctx, gridfs.Partial{Owner: "a@example.com", Name: "p.mp4",
		Size: 2*gridfs.DefaultChunkSize + 5, Expires: time.Now().Add(12 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.deps.Videos.Append(ctx, &partial, bytes.NewReader(make([]byte, gridfs.DefaultChunkSize+1)), partial.Expires); err != nil {
		t.Fatal(err)
	}
	cfg := Config{FailedVideoGrace: 24 * time.Hour, MP3Retention: 30 * 24 * time.Hour}

	// Right away: nothing is old enough.
	if rep, err := f.sweeper(cfg, time.Now()).Sweep(ctx); err != nil || !rep.empty() {
		t.Fatalf("sweep at once: %+v, %v; want nothing done", rep, err)
	}
	// An hour on: the done job's video goes (the converter would have
	// removed it already); the failed one waits for its grace.
	rep, err := f.sweeper(cfg, time.Now().Add(time.Hour)).Sweep(ctx)
	if err != nil || rep.DoneVideos != 1 || rep.FailedVideos != 0 || rep.Uploads != 0 {
		t.Fatalf("sweep an hour on: %+v, %v", rep, err)
	}
	if f.exists(f.deps.Videos, done) || !f.exists(f.deps.MP3s, done) || !f.exists(f.deps.Videos, failed) {
		t.Fatal("an hour on: want the done job's video gone, its MP3 and the failed video kept")
	}
	// A day and more: the failed job's video goes too, never the queued one's.
	rep, err = f.sweeper(cfg, time.Now().Add(25*time.Hour)).Sweep(ctx)
	if err != nil || rep.FailedVideos != 1 || rep.DoneVideos != 0 || rep.Uploads != 1 {
		t.Fatalf("sweep a day on: %+v, %v", rep, err)
	}
	// The abandoned upload expired: its state and its chunk are gone.
	if _, err := f.deps.Videos.GetPartial(ctx, partial.ID); !errors.Is(err, gridfs.ErrNotFound) {
		t.Fatalf("a day on, the expired upload: %v, want it gone", err)
	}
	if n, err := f.videosDB.Collection("fs.chunks").CountDocuments(ctx, bson.D{{Key: "files_id", Value: partial.ID}}); err != nil || n != 0 {
		t.Fatalf("a day on, the expired upload's chunks: %d, %v", n, err)
	}
	if f.exists(f.deps.Videos, failed) || !f.exists(f.deps.Videos, queued) {
		t.Fatal("a day on: want the failed video gone, the queued one kept")
	}
	if j, ok := f.job(failed); !ok || j.Status != jobs.Failed {
		t.Fatalf("the failed job itself must stay: %+v %v", j, ok)
	}
	// Eight days: the withdrawn upload's tombstone (and its video) go.
	if rep, err = f.sweeper(cfg, time.Now().Add(8*24*time.Hour)).Sweep(ctx); err != nil || rep.Withdrawn != 1 {
		t.Fatalf("sweep 8 days on: %+v, %v", rep, err)
	}
	if _, ok := f.job(withdrawn); ok || f.exists(f.deps.Videos, withdrawn) {
		t.Fatal("8 days on: want the withdrawn job and video gone")
	}
	// A month and more: the MP3s expire, with a tombstone each and the
	// job saying when.
	at := time.Now().Add(31 * 24 * time.Hour)
	if rep, err = f.sweeper(cfg, at).Sweep(ctx); err != nil || rep.ExpiredMP3s != 2 {
		t.Fatalf("sweep 31 days on: %+v, %v", rep, err)
	}
	for _, fid := range []string{done, originalMP3} {
		if f.exists(f.deps.MP3s, fid) {
			t.Fatalf("MP3 %s not expired", fid)
		}
		id, _ := bson.ObjectIDFromHex(fid)
		ts, err := f.deps.Tombstones.Get(ctx, id)
		if err != nil || !ts.ExpiredAt.Equal(at.UTC().Truncate(time.Millisecond)) && ts.ExpiredAt.Sub(at).Abs() > time.Millisecond {
			t.Fatalf("tombstone of %s: %+v, %v", fid, ts, err)
		}
	}
	var raw struct {
		ExpiredAt time.Time `bson:"expired_at"`
	}
	if err := f.videosDB.Collection(jobs.Collection).FindOne(ctx, bson.D{{Key: "_id", Value: done}}).Decode(&raw); err != nil ||
		raw.ExpiredAt.Sub(at).Abs() > time.Second {
		t.Fatalf("the done job's expired_at: %v, %v; want %v", raw.ExpiredAt, err, at)
	}
	// Again: nothing left to do.
	if rep, err = f.sweeper(cfg, at).Sweep(ctx); err != nil || !rep.empty() {
		t.Fatalf("second sweep: %+v, %v", rep, err)
	}
}

// KEEP_VIDEOS keeps a converted video; MP3_RETENTION 0 keeps MP3s.
func TestSweepKeeps(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	done := f.upload(jobs.Done, true, "a@example.com")
	rep, err := f.sweeper(Config{KeepVideos: true, FailedVideoGrace: time.Hour}, time.Now().Add(10*365*24*time.Hour)).Sweep(context.Background())
	if err != nil || !rep.empty() || !f.exists(f.deps.Videos, done) || !f.exists(f.deps.MP3s, done) {
		t.Fatalf("with KEEP_VIDEOS and no retention: %+v, %v; want the video and MP3 kept", rep, err)
	}
}

// One replica sweeps at a time: the lease goes to another only once it
// has run out (one sweep interval after its holder's last sweep).
func TestSweeperLease(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.sweeper(Config{SweepInterval: time.Second}, time.Now()), f.sweeper(Config{SweepInterval: time.Second}, time.Now())
	for _, tc := range []struct {
		who    *Sweeper
		want   bool
		reason string
	}{
		{a, true, "a takes the free lease"},
		{b, false, "b while a holds it"},
		{a, true, "a renews it"},
		{b, false, "b after a's renewal"},
	} {
		if got, err := tc.who.lease(ctx); err != nil || got != tc.want {
			t.Fatalf("%s: %v, %v; want %v", tc.reason, got, err, tc.want)
		}
	}
	// a stops renewing (it died): b takes over once the interval is up.
	testenv.Eventually(t, 10*time.Second, "b takes the lease a stopped renewing", func() bool {
		got, err := b.lease(ctx)
		return err == nil && got
	})
	if got, err := a.lease(ctx); err != nil || got {
		t.Fatalf("a once b holds it: %v, %v; want false", got, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{FailedVideoGrace: -1, SweepInterval: time.Minute}, {MP3Retention: -1, SweepInterval: time.Minute}, {}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := New(Deps{Log: slog.New(slog.DiscardHandler)}, Config{SweepInterval: time.Minute}); err == nil {
		t.Error("New without stores accepted")
	}
}
