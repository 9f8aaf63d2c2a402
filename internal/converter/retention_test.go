package converter

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/testenv"
)

// Once its MP3 is stored and announced, a video is removed (it was kept
// for ever and filled MongoDB's volume); KEEP_VIDEOS keeps it.
func TestVideoRemovedOnceConverted(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		h := newHarness(t)
		opt := h.options()
		opt.KeepVideos = keep
		h.start(h.deps(), opt)
		fid := h.submitFile(media(t, "mp4"), "clip.mp4", "a@example.com")
		if j := h.waitJob(fid, time.Minute); j.Status != "done" {
			t.Fatalf("keep %v: job %+v, want done", keep, j)
		}
		h.mp3Message(fid, 30*time.Second)
		// Counted once the handler returned; the video goes after the ack,
		// in the background.
		h.waitResult(resultDone, 1, 30*time.Second)
		id, _ := bson.ObjectIDFromHex(fid)
		gone := func() bool {
			_, statErr := h.videos.Stat(context.Background(), id)
			if statErr != nil && !errors.Is(statErr, gridfs.ErrNotFound) {
				t.Fatal(statErr)
			}
			var raw struct {
				VideoDeleted bool `bson:"video_deleted"`
			}
			if err := h.videosDB.Collection("jobs").FindOne(context.Background(), bson.D{{Key: "_id", Value: fid}}).Decode(&raw); err != nil {
				t.Fatal(err)
			}
			return statErr != nil && raw.VideoDeleted
		}
		if keep {
			if _, err := h.videos.Stat(context.Background(), id); err != nil {
				t.Fatalf("KEEP_VIDEOS: the video is gone: %v", err)
			}
		} else {
			testenv.Eventually(t, 30*time.Second, "the converted job's video removed and the job marked so", gone)
			if _, err := h.mp3s.Stat(context.Background(), id); err != nil {
				t.Fatalf("the MP3 went too: %v", err)
			}
		}
	}
}
