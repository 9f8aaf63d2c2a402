package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/testenv"
)

// pairingOriginalConverter does, from Go, what the original Python converter
// does with one message of the video queue: take it, read the video from
// GridFS "videos", extract the audio to MP3, store the MP3 with pymongo's
// fs.put (a new ObjectId, no filename, no metadata), publish
// {"video_fid", "mp3_fid", "username"} on the mp3 queue (persistent, default
// exchange), then ack. It returns the new MP3's id and bytes.
func pairingOriginalConverter(t *testing.T, s *suite) (mp3ID string, mp3 []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A consumer's channel of its own, as the original has: the message
	// stays unacked on it until the MP3's message is confirmed, and the ack
	// must go back on the channel that delivered it.
	conn, err := amqp.Dial(s.amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	var d amqp.Delivery
	testenv.Eventually(t, 30*time.Second, "a message on the video queue", func() bool {
		var ok bool
		d, ok, err = ch.Get(s.videoQueue, false)
		if err != nil {
			t.Fatalf("get from %s: %v", s.videoQueue, err)
		}
		return ok
	})
	var msg map[string]any
	if err := json.Unmarshal(d.Body, &msg); err != nil {
		t.Fatalf("video message %q: %v", d.Body, err)
	}
	videoFID, _ := msg["video_fid"].(string)
	username, _ := msg["username"].(string)
	vid, err := bson.ObjectIDFromHex(videoFID)
	if err != nil || username == "" || msg["mp3_fid"] != nil {
		t.Fatalf("video message %s: want the original's shape", d.Body)
	}

	// fs_videos.get(ObjectId(message["video_fid"])), then moviepy's
	// write_audiofile: an MP3.
	videos, err := gridfs.NewBucket(s.videosDB)
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := videos.Open(ctx, vid, 0)
	if err != nil {
		t.Fatalf("read video %s: %v", videoFID, err)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "video"), filepath.Join(dir, "audio.mp3")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, rc)
	rc.Close()
	if cerr := f.Close(); err != nil || cerr != nil {
		t.Fatalf("read video %s: %v %v", videoFID, err, cerr)
	}
	if b, err := exec.CommandContext(ctx, testenv.Getenv(t, "FFMPEG_PATH"), "-hide_banner", "-loglevel", "error",
		"-i", in, "-vn", "-c:a", "libmp3lame", "-q:a", "4", out).CombinedOutput(); err != nil {
		t.Fatalf("extract audio: %v\n%s", err, b)
	}
	if mp3, err = os.ReadFile(out); err != nil {
		t.Fatal(err)
	}

	id := pairingPut(t, ctx, s.mp3sDB, mp3)
	body := fmt.Appendf(nil, `{"video_fid": "%s", "mp3_fid": "%s", "username": "%s"}`, videoFID, id.Hex(), username)
	testenv.Publish(t, s.amqpURL, s.mp3Queue, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
	if err := d.Ack(false); err != nil {
		t.Fatal(err)
	}
	return id.Hex(), mp3
}

// pairingPut stores data as pymongo's GridFS fs.put(data) does: chunks, then
// a files document {_id, uploadDate, length, chunkSize} and nothing else.
func pairingPut(t *testing.T, ctx context.Context, db *mongo.Database, data []byte) bson.ObjectID {
	t.Helper()
	id := bson.NewObjectID()
	const size = gridfs.DefaultChunkSize
	for n := 0; n*size < len(data); n++ {
		if _, err := db.Collection("fs.chunks").InsertOne(ctx, bson.D{{Key: "_id", Value: bson.NewObjectID()},
			{Key: "files_id", Value: id}, {Key: "n", Value: int32(n)},
			{Key: "data", Value: data[n*size : min((n+1)*size, len(data))]}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Collection("fs.files").InsertOne(ctx, bson.D{{Key: "_id", Value: id},
		{Key: "uploadDate", Value: time.Now().UTC()}, {Key: "length", Value: int64(len(data))},
		{Key: "chunkSize", Value: int32(size)}}); err != nil {
		t.Fatal(err)
	}
	return id
}

// The Go gateway and notification with the original converter in place of
// the Go one: the owner sees the job done with the MP3 the original stored
// (under a new id, without an owner), gets the email, and downloads it byte
// for byte; another user cannot.
func TestGoGatewayOriginalConverter(t *testing.T) {
	t.Parallel()
	s := startSuite(t)
	// The original converter replaces the Go one.
	s.converter.Kill()
	owner, ownerTok := s.newUser(t, "pair_owner")
	_, otherTok := s.newUser(t, "pair_other")

	jobPath := s.upload(t, ownerTok, makeVideo(t, 3))
	if j := s.job(t, ownerTok, jobPath, "queued", time.Second); j["status"] != "queued" {
		t.Fatalf("job after upload = %v, want queued", j)
	}
	mp3ID, mp3 := pairingOriginalConverter(t, s)
	if mp3ID == path.Base(jobPath) {
		t.Fatal("the original's MP3 id equals the video's; the test proves nothing")
	}

	got := s.waitMailed(t, owner, []string{mp3ID}, time.Minute)
	if got[mp3ID] != 1 {
		t.Errorf("emails per MP3 = %v, want one for %s", got, mp3ID)
	}
	j := s.job(t, ownerTok, jobPath, "done")
	if j["status"] != "done" || j["mp3_fid"] != mp3ID || j["progress"] != float64(100) {
		t.Fatalf("job = %v, want done with mp3_fid %s", j, mp3ID)
	}
	status, b := s.get(t, ownerTok, "/download?fid="+mp3ID)
	if status != 200 || !bytes.Equal(b, mp3) {
		t.Fatalf("owner's download: %d, %d bytes; want 200 and the %d bytes stored", status, len(b), len(mp3))
	}
	if status, _ := s.get(t, otherTok, "/download?fid="+mp3ID); status != 404 {
		t.Fatalf("another user's download: %d, want 404", status)
	}
	s.waitQueuesEmpty(t, 30*time.Second)
}
