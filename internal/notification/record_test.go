package notification_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/message"
	"mp3converter/internal/notification"
	"mp3converter/internal/testenv"
)

// throughProxy returns the databases videos and mp3s as seen through a
// testenv.Proxy in front of the MongoDB server, with short timeouts so that
// an outage shows in a second.
func throughProxy(t *testing.T, videos, mp3s *mongo.Database) (*mongo.Database, *mongo.Database, *testenv.Proxy) {
	t.Helper()
	u, err := url.Parse(testenv.Getenv(t, "MONGODB_URI"))
	if err != nil || u.Host == "" || strings.Contains(u.Host, ",") {
		t.Fatalf("MONGODB_URI: want mongodb://host:port/ with a single host")
	}
	p := testenv.NewProxy(t, u.Host)
	u.Host = p.Addr()
	client, err := mongo.Connect(options.Client().ApplyURI(u.String()).
		SetServerSelectionTimeout(time.Second).SetConnectTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return client.Database(videos.Name()), client.Database(mp3s.Name()), p
}

// putLikeOriginal stores data in the GridFS bucket fs of db as the original
// converter does (pymongo's fs.put(bytes)): a new ObjectId, a files document
// with no filename and no metadata.
func putLikeOriginal(t *testing.T, db *mongo.Database, data []byte, meta ...bson.D) bson.ObjectID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := bson.NewObjectID()
	const chunkSize = gridfs.DefaultChunkSize
	for n := 0; n*chunkSize < len(data); n++ {
		chunk := data[n*chunkSize : min((n+1)*chunkSize, len(data))]
		if _, err := db.Collection("fs.chunks").InsertOne(ctx, bson.D{{Key: "_id", Value: bson.NewObjectID()},
			{Key: "files_id", Value: id}, {Key: "n", Value: int32(n)}, {Key: "data", Value: chunk}}); err != nil {
			t.Fatal(err)
		}
	}
	doc := bson.D{{Key: "_id", Value: id}, {Key: "uploadDate", Value: time.Now().UTC()},
		{Key: "length", Value: int64(len(data))}, {Key: "chunkSize", Value: int32(chunkSize)}}
	if len(meta) > 0 {
		doc = append(doc, bson.E{Key: "metadata", Value: meta[0]})
	}
	if _, err := db.Collection("fs.files").InsertOne(ctx, doc); err != nil {
		t.Fatal(err)
	}
	return id
}

// originalMessage is the body the original converter publishes on the mp3
// queue (Python's json.dumps of its dict).
func originalMessage(videoFID, mp3FID, username string) []byte {
	return fmt.Appendf(nil, `{"video_fid": "%s", "mp3_fid": "%s", "username": "%s"}`, videoFID, mp3FID, username)
}

func (s *stack) newJob(owner string) jobs.Job {
	s.t.Helper()
	id := bson.NewObjectID().Hex()
	j := jobs.Job{ID: id, Username: owner, Filename: "holiday.mp4", VideoFID: id}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.jobs.Create(ctx, j); err != nil {
		s.t.Fatal(err)
	}
	return s.job(id)
}

func (s *stack) job(id string) jobs.Job {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := s.jobs.Get(ctx, id)
	if err != nil {
		s.t.Fatal(err)
	}
	return j
}

// owner is the MP3's metadata.owner ("" when it has none), read directly.
func (s *stack) owner(id bson.ObjectID) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var f struct {
		Metadata struct {
			Owner string `bson:"owner"`
		} `bson:"metadata"`
	}
	if err := s.mp3sDB.Collection("fs.files").FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&f); err != nil {
		s.t.Fatalf("files document of %s: %v", id.Hex(), err)
	}
	return f.Metadata.Owner
}

func doneWith(j jobs.Job, mp3FID string) bool {
	return j.Status == jobs.Done && j.Progress == 100 && j.MP3FID != nil && *j.MP3FID == mp3FID && j.Error == ""
}

// The Go gateway's upload converted by the original converter: its MP3 has a
// new id and no owner, and no job is updated. Before the email goes out, the
// notification marks the job done with that MP3 and gives the MP3 the
// video's owner (from the job, not from the message, which anyone who may
// publish to the queue could write).
func TestRecordsOriginalConvertersMP3(t *testing.T) {
	t.Parallel()
	mp := testenv.MailpitShared(t)
	s := startStack(t, plainSMTP(mp), stackOptions{})
	owner, named := testenv.MailAddress("record_owner"), testenv.MailAddress("record_named")
	job := s.newJob(owner)
	mp3 := putLikeOriginal(t, s.mp3sDB, []byte("ID3 an mp3 made by the original converter"))
	if o := s.owner(mp3); o != "" {
		t.Fatalf("stored MP3 has owner %q, want none", o)
	}
	body := originalMessage(job.VideoFID, mp3.Hex(), named)

	s.publish(body)
	// The email goes to the message's username, as before; by the time it
	// arrives, the outcome is recorded (recording comes first).
	got := mp.WaitFor(t, named, mailWait)
	if !strings.Contains(got.Text, "mp3 file_id: "+mp3.Hex()+" is now ready!") {
		t.Errorf("email text:\n%s", got.Text)
	}
	done := s.job(job.ID)
	if !doneWith(done, mp3.Hex()) {
		t.Errorf("job = %+v, want done with mp3_fid %s", done, mp3.Hex())
	}
	if o := s.owner(mp3); o != owner {
		t.Errorf("MP3 owner = %q, want the job's owner %q (not the message's %q)", o, owner, named)
	}
	s.waitCount(notification.ResultSent, 1)
	s.drained()

	// The same message again (a redelivery): nothing changes, nothing fails.
	s.publish(body)
	testenv.Eventually(t, mailWait, "the repeated message emailed", func() bool { return len(mp.To(t, named)) == 2 })
	s.waitCount(notification.ResultSent, 2)
	s.drained()
	if again := s.job(job.ID); !doneWith(again, mp3.Hex()) || !again.UpdatedAt.Equal(done.UpdatedAt) {
		t.Errorf("the repeat rewrote the job: %+v (updated_at was %v)", again, done.UpdatedAt)
	}
	if o := s.owner(mp3); o != owner {
		t.Errorf("MP3 owner after the repeat = %q, want %q", o, owner)
	}
	if r, f := s.count(notification.ResultRetried), s.count(notification.ResultFailed); r != 0 || f != 0 {
		t.Errorf("retried, failed = %v, %v; want 0, 0", r, f)
	}
}

// The other shapes of success and failure messages.
func TestRecordCases(t *testing.T) {
	t.Parallel()
	mp := testenv.MailpitShared(t)
	s := startStack(t, plainSMTP(mp), stackOptions{})

	t.Run("an existing owner is kept", func(t *testing.T) {
		owner, other := testenv.MailAddress("record_keep_job"), testenv.MailAddress("record_keep_mp3")
		job := s.newJob(owner)
		mp3 := putLikeOriginal(t, s.mp3sDB, []byte("ID3 owned"), bson.D{{Key: "owner", Value: other}})
		s.publish(originalMessage(job.VideoFID, mp3.Hex(), owner))
		mp.WaitFor(t, owner, mailWait)
		if o := s.owner(mp3); o != other {
			t.Errorf("MP3 owner = %q, want it kept as %q", o, other)
		}
	})

	t.Run("no job (the original gateway's upload): owner from the message", func(t *testing.T) {
		user := testenv.MailAddress("record_nojob")
		mp3 := putLikeOriginal(t, s.mp3sDB, []byte("ID3 no job"))
		s.publish(originalMessage(bson.NewObjectID().Hex(), mp3.Hex(), user))
		mp.WaitFor(t, user, mailWait)
		if o := s.owner(mp3); o != user {
			t.Errorf("MP3 owner = %q, want the message's %q", o, user)
		}
	})

	t.Run("the Go converter's message: already recorded, nothing written", func(t *testing.T) {
		user := testenv.MailAddress("record_go")
		job := s.newJob(user)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The Go converter stores the MP3 under the video's id, with its owner.
		mp3, err := bson.ObjectIDFromHex(job.VideoFID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.mp3sDB.Collection("fs.files").InsertOne(ctx, bson.D{{Key: "_id", Value: mp3},
			{Key: "length", Value: int64(0)}, {Key: "chunkSize", Value: int32(gridfs.DefaultChunkSize)},
			{Key: "uploadDate", Value: time.Now()}, {Key: "filename", Value: "holiday.mp3"},
			{Key: "metadata", Value: bson.D{{Key: "owner", Value: user}, {Key: "video_fid", Value: job.VideoFID}}}}); err != nil {
			t.Fatal(err)
		}
		if err := s.jobs.Done(ctx, job.ID, job.VideoFID); err != nil {
			t.Fatal(err)
		}
		done := s.job(job.ID)
		s.publishMsg(message.Conversion{VideoFID: job.VideoFID, MP3FID: &job.VideoFID, Username: user, Filename: "holiday.mp4"})
		mp.WaitFor(t, user, mailWait)
		if again := s.job(job.ID); !doneWith(again, job.VideoFID) || !again.UpdatedAt.Equal(done.UpdatedAt) {
			t.Errorf("job rewritten: %+v (updated_at was %v)", again, done.UpdatedAt)
		}
		if o := s.owner(mp3); o != user {
			t.Errorf("MP3 owner = %q, want %q", o, user)
		}
	})

	t.Run("a failure message records nothing", func(t *testing.T) {
		user := testenv.MailAddress("record_failed")
		job := s.newJob(user)
		s.publishMsg(message.Conversion{VideoFID: job.VideoFID, Username: user, Filename: "cat.mov", Error: "no audio track"})
		mp.WaitFor(t, user, mailWait)
		if again := s.job(job.ID); again.Status != jobs.Queued || !again.UpdatedAt.Equal(job.UpdatedAt) {
			t.Errorf("job changed by a failure message: %+v", again)
		}
	})

	t.Run("the announced MP3 is missing: emailed all the same", func(t *testing.T) {
		user := testenv.MailAddress("record_missing")
		s.publish(originalMessage(bson.NewObjectID().Hex(), bson.NewObjectID().Hex(), user))
		mp.WaitFor(t, user, mailWait)
	})

	s.drained()
	if r, f := s.count(notification.ResultRetried), s.count(notification.ResultFailed); r != 0 || f != 0 {
		t.Errorf("retried, failed = %v, %v; want 0, 0", r, f)
	}
}

// MongoDB unreachable is transient: the message is retried, and nothing is
// emailed before the outcome is recorded.
func TestRecordMongoDown(t *testing.T) {
	t.Parallel()
	mp := testenv.MailpitShared(t)
	s := startStack(t, plainSMTP(mp), stackOptions{maxAttempts: 50, mongoProxy: true})
	owner, named := testenv.MailAddress("record_down_owner"), testenv.MailAddress("record_down_named")
	job := s.newJob(owner)
	mp3 := putLikeOriginal(t, s.mp3sDB, []byte("ID3 during an outage"))

	s.mongoProxy.Down()
	s.publish(originalMessage(job.VideoFID, mp3.Hex(), named))
	s.waitCount(notification.ResultRetried, 2)
	if got := mp.To(t, named); len(got) != 0 {
		t.Fatalf("emailed while the outcome could not be recorded: %+v", got)
	}
	if j := s.job(job.ID); j.Status != jobs.Queued {
		t.Fatalf("job = %+v during the outage", j)
	}
	s.mongoProxy.Up()
	mp.WaitFor(t, named, 30*time.Second)
	if j := s.job(job.ID); !doneWith(j, mp3.Hex()) {
		t.Errorf("job = %+v, want done with %s", j, mp3.Hex())
	}
	if o := s.owner(mp3); o != owner {
		t.Errorf("MP3 owner = %q, want %q", o, owner)
	}
	s.waitCount(notification.ResultSent, 1)
	s.drained()
	if n := len(mp.To(t, named)); n != 1 {
		t.Errorf("%d emails, want 1", n)
	}
}
